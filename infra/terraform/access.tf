# Every permission of every function, in one place for review.
#
# Each function runs as its own service account, fn-<name>, and gets exactly
# the grants below, each bound on the resource itself (key, table, topic,
# bucket, secret). The one project-level grant is roles/bigquery.jobUser,
# because BigQuery grants the right to run query jobs on projects only.
#
#   kms_keys        key alias (api_keys, credentials) => encrypter, decrypter
#                   or encrypter_decrypter
#   tables          table => viewer (roles/bigquery.dataViewer) or editor
#                   (roles/bigquery.dataEditor: read, insert, update, delete)
#   publish_topics  topics the function publishes to
#   buckets         bucket alias (backup) => object_creator, object_user or
#                   object_viewer
#   secrets         environment variable => Secret Manager secret id
#
# A function in infra/topology.yaml without an entry here stops the plan.
# HTTP functions write an audit event to tenant_audit_logs themselves when
# publishing it fails (shared/events.py), hence their editor role there.

locals {
  function_access = {
    issue_key = {
      # Encrypt only: issuing a key wraps data keys. Decrypting a stored key
      # is an operator's recovery task (KeyService.decrypt_key), not issue_key's.
      kms_keys = { api_keys = "encrypter" }
      tables = {
        tenants           = "editor"
        users             = "editor"
        tenant_api_keys   = "editor"
        tenant_usage      = "editor" # verification appends usage; listing joins it
        tenant_audit_logs = "editor"
      }
      publish_topics = ["audit-events"]
      buckets        = {}
      secrets        = {}
    }

    validate_credentials = {
      # Seals credentials on store and opens them for GET /credentials/{id}/secret.
      kms_keys = { credentials = "encrypter_decrypter" }
      tables = {
        tenant_api_keys    = "viewer" # verifies the caller's API key by hash
        tenant_usage       = "editor"
        tenant_credentials = "editor"
        tenant_audit_logs  = "editor"
      }
      publish_topics = ["audit-events"]
      buckets        = {}
      # Required with KMS_BACKEND=gcp (shared/config.py).
      secrets = { CREDENTIALS_FINGERPRINT_KEY = "credentials-fingerprint-key" }
    }

    audit_writer = {
      kms_keys       = {}
      tables         = { tenant_audit_logs = "editor" }
      publish_topics = []
      buckets        = {}
      secrets        = {}
    }

    backup_exporter = {
      # Exports ciphertext as stored; restoring needs no key either. Without
      # cloudkms.cryptoKeys.get the manifest records no primary key version.
      kms_keys = {}
      tables = {
        tenants            = "viewer"
        users              = "viewer"
        tenant_api_keys    = "viewer"
        tenant_credentials = "viewer"
        # Exported when BACKUP_INCLUDE_AUDIT_LOGS is true; written when
        # publishing backup.completed or backup.failed fails.
        tenant_audit_logs = "editor"
      }
      publish_topics = ["audit-events"]
      # Object user: create, read, replace and delete objects (claims are
      # replaced, expired runs pruned), but no IAM or bucket settings.
      buckets = { backup = "object_user" }
      secrets = {}
    }

    expiry_alerter = {
      kms_keys = {}
      tables = {
        tenants             = "viewer" # contact_email
        tenant_api_keys     = "viewer"
        tenant_credentials  = "viewer" # provider-reported expires_at
        tenant_usage        = "viewer"
        tenant_audit_logs   = "editor" # reads failures; alert.sent when publishing fails
        alert_notifications = "editor" # the append-only notification ledger
      }
      publish_topics = ["alerts", "audit-events"]
      buckets        = {}
      secrets = {
        SMTP_PASSWORD     = "smtp-password"
        SLACK_WEBHOOK_URL = "slack-webhook-url"
      }
    }
  }

  no_access = {
    kms_keys       = {}
    tables         = {}
    publish_topics = []
    buckets        = {}
    secrets        = {}
  }

  kms_roles = {
    encrypter           = "roles/cloudkms.cryptoKeyEncrypter"
    decrypter           = "roles/cloudkms.cryptoKeyDecrypter"
    encrypter_decrypter = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  }
  table_roles = {
    viewer = "roles/bigquery.dataViewer"
    editor = "roles/bigquery.dataEditor"
  }
  bucket_roles = {
    object_creator = "roles/storage.objectCreator"
    object_user    = "roles/storage.objectUser"
    object_viewer  = "roles/storage.objectViewer"
  }

  # Only functions that the topology deploys get grants.
  access = { for name in keys(local.functions) : name => lookup(local.function_access, name, local.no_access) }
  member = { for name, account in google_service_account.function : name => "serviceAccount:${account.email}" }

  pipeline_reader = var.pipeline_reader_service_account == null ? null : "serviceAccount:${var.pipeline_reader_service_account}"

  kms_bindings = merge(
    {
      for grant in flatten([
        for name, access in local.access : [
          for key, use in access.kms_keys : { function = name, key = key, use = use }
        ]
        ]) : "${grant.function}/${grant.key}" => {
        key    = grant.key
        role   = local.kms_roles[grant.use]
        member = local.member[grant.function]
      }
    },
    # The pipelines read stored credentials, so they unwrap data keys only.
    local.pipeline_reader == null ? {} : {
      "pipeline_reader/credentials" = {
        key    = "credentials"
        role   = local.kms_roles.decrypter
        member = local.pipeline_reader
      }
    },
  )

  table_grants = concat(
    flatten([
      for name, access in local.access : [
        for table, use in access.tables : { id = name, table = table, use = use, member = local.member[name] }
      ]
    ]),
    local.pipeline_reader == null ? [] : [
      { id = "pipeline_reader", table = "tenant_credentials", use = "viewer", member = local.pipeline_reader }
    ],
  )

  table_bindings = {
    for grant in local.table_grants : "${grant.id}/${grant.table}" => {
      table  = grant.table
      role   = local.table_roles[grant.use]
      member = grant.member
    }
  }

  all_rows_members = {
    for table in keys(jsondecode(file("${path.module}/schemas/tables.json"))) : table => distinct(concat(
      [for grant in local.table_grants : grant.member if grant.table == table],
      var.all_rows_readers,
    ))
  }

  publishers = merge([
    for name, access in local.access : {
      for topic in access.publish_topics : "${name}/${topic}" => {
        topic  = topic
        member = local.member[name]
      }
    }
  ]...)

  backup_bucket_bindings = merge([
    for name, access in local.access : {
      for bucket, use in access.buckets : "${name}/${bucket}" => {
        role   = local.bucket_roles[use]
        member = local.member[name]
      } if bucket == "backup"
    }
  ]...)

  secret_accessors = {
    for secret in distinct(flatten([for access in values(local.access) : values(access.secrets)])) :
    secret => [
      for name, access in local.access : local.member[name] if contains(values(access.secrets), secret)
    ]
  }

  # Functions that run query jobs.
  bigquery_users = { for name, access in local.access : name => local.member[name] if length(access.tables) > 0 }
}

resource "google_project_iam_member" "bigquery_job_user" {
  for_each = local.bigquery_users

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = each.value
}
