# The backup bucket. A retention policy, not Object Versioning, protects the
# backups: Cloud Storage does not allow both on one bucket, and the policy is
# the stronger guarantee, since no one (the exporter included) can delete or
# replace an object until it is retention_days old.

resource "google_storage_bucket" "this" {
  #checkov:skip=CKV_GCP_78:Versioning cannot be combined with the retention policy, which already forbids overwriting or deleting a backup before it expires.
  #checkov:skip=CKV_GCP_62:Reads and writes are recorded by Cloud Audit Logs (Data Access logs for storage.googleapis.com, enabled in the root module), the successor of usage logs.
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = false
  }

  retention_policy {
    retention_period = var.retention_days * 86400
    is_locked        = var.lock_retention
  }

  lifecycle_rule {
    condition {
      age = var.retention_days
    }
    action {
      type = "Delete"
    }
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_days * 86400
  }
}

resource "google_storage_bucket_iam_member" "this" {
  for_each = var.iam_members

  bucket = google_storage_bucket.this.name
  role   = each.value.role
  member = each.value.member
}
