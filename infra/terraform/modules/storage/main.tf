# The backup bucket. The backup exporter prunes runs older than
# BACKUP_RETENTION_DAYS itself and replaces its claim objects, so a bucket
# retention policy, which forbids both, does not fit. Versioning protects the
# backups instead: an overwritten or deleted backup stays recoverable as a
# noncurrent version for another retention_days.

resource "google_storage_bucket" "this" {
  #checkov:skip=CKV_GCP_62:Reads and writes go to the Cloud Audit Logs Data Access logs of storage.googleapis.com, which the root module turns on (enable_data_access_audit_logs).
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Backstop for the exporter's own pruning: a backup is deleted once it is
  # retention_days old, and its noncurrent versions retention_days later.
  lifecycle_rule {
    condition {
      age        = var.retention_days
      with_state = "LIVE"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.retention_days
      with_state                 = "ARCHIVED"
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
