terraform {
  # 1.5 for check blocks and the stricter for_each planning they rely on.
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.36 adds google_bigquery_row_access_policy.
      version = ">= 6.36.0, < 7.0.0"
    }
  }

  # One state per environment: pass the bucket and prefix with
  # -backend-config=environments/<env>.backend.hcl (docs/deploy.md).
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, {
    environment = var.environment
    managed-by  = "terraform"
  })
}
