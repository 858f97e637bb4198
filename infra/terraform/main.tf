# One environment of the platform. infra/topology.yaml declares the topics,
# subscriptions, functions and schedules once, for this configuration and for
# the local stack (infra/local_stack.py) alike; access.tf lists every grant.

locals {
  topology_path = startswith(var.topology_file, "/") ? var.topology_file : "${path.module}/${var.topology_file}"
  bundle_dir    = startswith(var.bundle_dir, "/") ? var.bundle_dir : "${path.module}/${var.bundle_dir}"
  schema_dir    = "${path.module}/schemas"

  topology      = yamldecode(file(local.topology_path))
  functions     = { for function in local.topology.functions : function.name => function }
  subscriptions = try(local.topology.subscriptions, [])
  schedules     = try(local.topology.schedules, [])

  # The push subscription that delivers to each Pub/Sub-triggered function.
  push_subscription = {
    for subscription in local.subscriptions : subscription.push_function => subscription
    if try(subscription.push_function, null) != null
  }
  dead_letter_topics = toset([
    for subscription in local.subscriptions : subscription.dead_letter_policy.topic
    if try(subscription.dead_letter_policy, null) != null
  ])

  kms_location       = coalesce(var.kms_location, var.region)
  backup_bucket_name = coalesce(var.backup_bucket_name, "${var.project_id}-convergence-backup")

  # Settings every function reads (shared/config.py); the variable names are
  # checked against the Settings fields by tests/infra.
  common_environment = {
    KMS_BACKEND              = "gcp"
    KMS_PROJECT_ID           = var.project_id
    KMS_LOCATION             = local.kms_location
    KMS_KEYRING              = var.kms_keyring
    KMS_API_KEY_NAME         = var.kms_api_key_name
    KMS_CREDENTIALS_KEY_NAME = var.kms_credentials_key_name
    STORE_BACKEND            = "bigquery"
    BIGQUERY_PROJECT_ID      = var.project_id
    BIGQUERY_LOCATION        = var.bigquery_location
    TENANTS_DATASET_ID       = var.dataset_id
    AUDIT_DELIVERY           = "pubsub"
    PUBSUB_PROJECT_ID        = var.project_id
    LOG_LEVEL                = var.log_level
  }

  # Settings of single functions that depend on this environment. Constant
  # ones, such as AUDIT_TOPIC, sit under environment: in the topology file.
  function_environment = {
    issue_key = merge(
      { CORS_ALLOWED_ORIGINS = join(",", var.cors_allowed_origins) },
      var.operator_token_sha256 == null ? {} : { OPERATOR_TOKEN_SHA256 = var.operator_token_sha256 },
    )
    validate_credentials = {
      CORS_ALLOWED_ORIGINS = join(",", var.cors_allowed_origins)
    }
    backup_exporter = {
      BACKUP_BUCKET         = local.backup_bucket_name
      BACKUP_RETENTION_DAYS = tostring(var.backup_retention_days)
    }
  }

  services = [
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "this" {
  for_each = toset(local.services)

  project            = var.project_id
  service            = each.key
  disable_on_destroy = false
}

resource "google_project_iam_audit_config" "data_access" {
  for_each = var.enable_data_access_audit_logs ? toset(["cloudkms.googleapis.com", "storage.googleapis.com"]) : toset([])

  project = var.project_id
  service = each.key

  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

# Identities

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "fn-${replace(each.key, "_", "-")}"
  display_name = "Cloud Function ${each.key}"
  description  = "Runs ${each.key}; its grants are listed in infra/terraform/access.tf."

  lifecycle {
    precondition {
      condition     = contains(keys(local.function_access), each.key)
      error_message = "Function ${each.key} is in the topology but has no entry in function_access (infra/terraform/access.tf)."
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_service_account" "push_invoker" {
  project      = var.project_id
  account_id   = "pubsub-push-invoker"
  display_name = "Pub/Sub push to the functions"
  description  = "Identity in the OIDC token of every push subscription; may only invoke the Pub/Sub-triggered functions."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "builder" {
  project      = var.project_id
  account_id   = "function-builder"
  display_name = "Cloud Functions builds"
  description  = "Cloud Build runs the function builds as this account."

  depends_on = [google_project_service.this]
}

# Cloud Functions creates its image repository (gcf-artifacts) during the
# first build, so these two roles cannot be bound on a resource of ours.
resource "google_project_iam_member" "builder" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])

  project = var.project_id
  role    = each.key
  member  = "serviceAccount:${google_service_account.builder.email}"
}

# Resources

module "kms" {
  source = "./modules/kms"

  project_id       = var.project_id
  location         = local.kms_location
  keyring_name     = var.kms_keyring
  protection_level = var.kms_protection_level
  key_names = {
    api_keys    = var.kms_api_key_name
    credentials = var.kms_credentials_key_name
  }
  iam_members = local.kms_bindings

  depends_on = [google_project_service.this]
}

module "bigquery" {
  source = "./modules/bigquery"

  project_id            = var.project_id
  dataset_id            = var.dataset_id
  location              = var.bigquery_location
  schema_dir            = local.schema_dir
  table_iam_members     = local.table_bindings
  all_rows_members      = local.all_rows_members
  tenant_analyst_groups = var.tenant_analyst_groups
  analyst_tables        = var.analyst_tables

  depends_on = [google_project_service.this]
}

module "backup_bucket" {
  source = "./modules/storage"

  project_id     = var.project_id
  name           = local.backup_bucket_name
  location       = var.storage_location
  retention_days = var.backup_retention_days
  iam_members    = local.backup_bucket_bindings

  depends_on = [google_project_service.this]
}

module "secrets" {
  source = "./modules/secrets"

  project_id = var.project_id
  accessors  = local.secret_accessors

  depends_on = [google_project_service.this]
}

module "functions" {
  source = "./modules/functions"

  project_id         = var.project_id
  region             = var.region
  source_bucket_name = "${var.project_id}-function-sources"
  build_service_account = {
    id    = google_service_account.builder.id
    email = google_service_account.builder.email
  }

  functions = {
    for name, function in local.functions : name => {
      entry_point           = function.entry_point
      signature_type        = function.signature_type
      source_zip            = "${local.bundle_dir}/${name}.zip"
      service_account_email = google_service_account.function[name].email
      environment = merge(
        local.common_environment,
        try(function.environment, {}),
        lookup(local.function_environment, name, {}),
        # functions-framework serves requests on THREADS threads per instance.
        { THREADS = tostring(lookup(var.function_request_concurrency, name, 1)) },
      )
      secret_environment = local.access[name].secrets
      # A push delivery times out at the ack deadline, and Pub/Sub sends the
      # message again; the function gets the same time, no more.
      timeout_seconds = (
        function.signature_type == "http"
        ? var.http_timeout_seconds
        : try(local.push_subscription[name].ack_deadline_seconds, 10)
      )
      memory        = lookup(var.function_memory, name, var.default_function_memory)
      max_instances = var.max_instances
      request_concurrency = lookup(
        var.function_request_concurrency, name, 1
      )
      invoker_members = (
        function.signature_type == "http"
        ? var.http_invoker_members
        : ["serviceAccount:${google_service_account.push_invoker.email}"]
      )
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.builder,
    module.secrets,
  ]
}

module "pubsub" {
  source = "./modules/pubsub"

  project_id     = var.project_id
  project_number = data.google_project.this.number
  topics         = [for topic in local.topology.topics : topic.name]
  subscriptions  = local.subscriptions
  push_endpoints = module.functions.uris
  push_service_account = {
    id    = google_service_account.push_invoker.id
    email = google_service_account.push_invoker.email
  }
  publishers = local.publishers

  depends_on = [google_project_service.this]
}

module "scheduler" {
  source = "./modules/scheduler"

  project_id = var.project_id
  region     = var.region
  jobs       = local.schedules
  topic_ids  = module.pubsub.topic_ids

  depends_on = [google_project_service.this]
}

module "monitoring" {
  source = "./modules/monitoring"

  project_id         = var.project_id
  service_names      = values(module.functions.service_names)
  push_subscriptions = [for subscription in values(local.push_subscription) : subscription.name]
  dead_letter_subscriptions = [
    for subscription in local.subscriptions : subscription.name
    if contains(local.dead_letter_topics, subscription.topic)
  ]
  alert_email_addresses    = var.alert_email_addresses
  notification_channel_ids = var.notification_channel_ids

  depends_on = [google_project_service.this]
}
