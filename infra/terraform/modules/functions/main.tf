# Cloud Functions (2nd gen) built from the bundles of `make package`. Each
# bundle is uploaded under a name that contains its MD5, so a changed bundle
# is a new object and Terraform rebuilds only the functions that changed.

locals {
  # Cloud Run service names allow lower-case letters, digits and hyphens.
  service_names = { for name in keys(var.functions) : name => replace(name, "_", "-") }

  invokers = {
    for pair in flatten([
      for name, function in var.functions : [
        for member in function.invoker_members : { function = name, member = member }
      ]
    ]) : "${pair.function}/${pair.member}" => pair
  }
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Reads and writes go to the Cloud Audit Logs Data Access logs of storage.googleapis.com, which the root module turns on (enable_data_access_audit_logs).
  project                     = var.project_id
  name                        = var.source_bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  # Bundles of earlier deployments are only needed for a quick rollback.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_iam_member" "builder_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${var.build_service_account.email}"
}

resource "google_storage_bucket_object" "bundle" {
  for_each = var.functions

  bucket = google_storage_bucket.source.name
  name   = "${each.key}-${filemd5(each.value.source_zip)}.zip"
  source = each.value.source_zip
}

# No function has an event_trigger, so each is deployed as an HTTP service.
# A Pub/Sub function still receives CloudEvents: functions-framework takes the
# signature type from the @functions_framework.cloud_event decorator first,
# and turns a Pub/Sub push body into a CloudEvent (tests/infra checks that
# each entry point carries the decorator its topology entry names).
resource "google_cloudfunctions2_function" "this" {
  for_each = var.functions

  project     = var.project_id
  location    = var.region
  name        = local.service_names[each.key]
  description = "${each.key} (${each.value.signature_type})"

  build_config {
    runtime         = var.runtime
    entry_point     = each.value.entry_point
    service_account = var.build_service_account.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  service_config {
    available_memory   = each.value.memory
    timeout_seconds    = each.value.timeout_seconds
    min_instance_count = 0
    max_instance_count = each.value.max_instances
    # More than one request at a time per instance needs a whole vCPU. The
    # audit writer uses it to gather concurrent deliveries into one insert.
    max_instance_request_concurrency = each.value.request_concurrency
    available_cpu                    = each.value.request_concurrency > 1 ? "1" : null
    service_account_email            = each.value.service_account_email
    all_traffic_on_latest_revision   = true
    environment_variables            = each.value.environment
    # HTTP functions serve tenants on the internet and check API keys
    # themselves. Pub/Sub push from this project counts as internal traffic
    # (Cloud Run ingress settings), so event functions accept nothing else.
    ingress_settings = each.value.signature_type == "http" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"

    dynamic "secret_environment_variables" {
      for_each = each.value.secret_environment
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  depends_on = [google_storage_bucket_iam_member.builder_reads_source]
}

# A 2nd gen function is a Cloud Run service, so invoking it takes
# roles/run.invoker on that service.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invokers

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}
