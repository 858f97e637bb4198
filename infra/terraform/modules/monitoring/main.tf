# Log-based metrics and alert policies for the alert rules. They are evaluated
# by Cloud Monitoring, so a page still fires when a function is down; the
# backlog and dead-letter policies below cover a function that is down.
#
# The functions write JSON lines (shared/logs.py). Cloud Run turns "message"
# into jsonPayload.message, "error_type" into jsonPayload.error_type and
# "logging.googleapis.com/labels" into the entry's labels. Each metric names
# the log line it counts; change both together.

locals {
  services = join(" OR ", [for name in var.service_names : "\"${name}\""])
  source   = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${local.services})"

  # Audit events as written: functions/audit_writer/main.py logs
  # "audit event stored" once per new event, and shared/events.py logs
  # "publishing audit event failed (...); writing it to the store" when a
  # function writes the event itself. Both carry labels event_id and
  # event_type, and together count each event once.
  audit_events = "${local.source} AND (jsonPayload.message=\"audit event stored\" OR jsonPayload.message=~\"^publishing audit event failed\")"

  channels = concat(
    [for channel in google_monitoring_notification_channel.email : channel.id],
    var.notification_channel_ids,
  )

  log_metrics = {
    failed_authentications = {
      description = "Audit events of type authentication.failed (shared.keyservice audits every rejected key)."
      filter      = "${local.audit_events} AND labels.event_type=\"authentication.failed\""
      labels      = {}
    }
    failed_authentications_by_source = {
      description = "authentication.failed audit events by tenant, user and client IP."
      filter      = "${local.audit_events} AND labels.event_type=\"authentication.failed\""
      # functions/audit_writer/main.py adds tenant_id, user_id and
      # ip_address to "audit event stored" when the event has them.
      labels = {
        tenant_id  = "EXTRACT(labels.tenant_id)"
        user_id    = "EXTRACT(labels.user_id)"
        ip_address = "EXTRACT(labels.ip_address)"
      }
    }
    # shared/alerts/_delivery.py logs "alert sent" with label rule for each
    # warning it sends, once per channel. Unlike the rules below, this one
    # needs the expiry alerter to run: only its query finds expiring keys.
    api_keys_expiring = {
      description = "Expiry warnings sent by the expiry alerter: a key expires within 7 days."
      filter      = "${local.source} AND jsonPayload.message=\"alert sent\" AND labels.rule=\"api_key.expiring\""
      labels      = {}
    }
    # The HTTP functions log a KmsUnavailableError as "dependency unavailable"
    # and any other KmsError as "request failed", both with error_type set to
    # the exception class (shared/crypto/_kms.py). shared/crypto/_cloud.py
    # logs each failed CRC32C check before it retries.
    kms_failures = {
      description = "Failed Cloud KMS operations seen by the functions."
      filter      = "${local.source} AND (jsonPayload.error_type=~\"^Kms\" OR jsonPayload.message=~\"^Cloud KMS (en|de)crypt failed its CRC32C check\")"
      labels      = {}
    }
  }

  # name => window, threshold, severity, group_by and documentation.
  log_alerts = {
    api_keys_expiring = {
      display_name = "API key expiring within 7 days"
      window       = "3600s"
      threshold    = 0
      severity     = "WARNING"
      group_by     = []
      runbook      = "The expiry alerter found a key that expires within 7 days. Ask the tenant to rotate it (POST /keys/{id}/rotate)."
    }
    failed_authentications_by_source = {
      display_name = "More than 5 failed authentications for one tenant, user and IP in an hour"
      window       = "3600s"
      threshold    = 5
      severity     = "ERROR"
      group_by     = ["metric.label.tenant_id", "metric.label.user_id", "metric.label.ip_address"]
      runbook      = "Someone is guessing or replaying keys. Query tenant_audit_logs for event_type = 'authentication.failed' in the last hour, grouped by tenant_id, user_id and ip_address."
    }
    failed_authentications = {
      display_name = "More than 100 failed authentications in one minute"
      window       = "60s"
      threshold    = 100
      severity     = "WARNING"
      group_by     = []
      runbook      = "A spike of rejected API keys across tenants: a credential-stuffing attempt or a broken client release. Check the client IPs in tenant_audit_logs."
    }
    kms_failures = {
      display_name = "More than 10 failed KMS operations in 5 minutes"
      window       = "300s"
      threshold    = 10
      severity     = "CRITICAL"
      group_by     = []
      runbook      = "Keys cannot be issued or credentials read. Check the key versions' state and the functions' IAM on the keys (roles/cloudkms.*)."
    }
  }
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_email_addresses)

  project      = var.project_id
  display_name = "Convergence alerts: ${each.key}"
  type         = "email"
  labels = {
    email_address = each.key
  }
}

resource "google_logging_metric" "this" {
  for_each = local.log_metrics

  project     = var.project_id
  name        = each.key
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels
}

resource "google_monitoring_alert_policy" "log_metric" {
  for_each = local.log_alerts

  project               = var.project_id
  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = local.channels

  conditions {
    display_name = each.value.display_name

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this[each.key].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"

      aggregations {
        alignment_period     = each.value.window
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = each.value.group_by
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = each.value.runbook
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

# Failed KMS calls as Google's API front end counts them, from every caller in
# the project, whatever the functions log. Same threshold as kms_failures.
resource "google_monitoring_alert_policy" "kms_api_errors" {
  project               = var.project_id
  display_name          = "More than 10 failed Cloud KMS API calls in 5 minutes"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.channels

  conditions {
    display_name = "Cloud KMS requests with a 4xx or 5xx response"

    condition_threshold {
      filter          = "metric.type=\"serviceruntime.googleapis.com/api/request_count\" AND resource.type=\"consumed_api\" AND resource.label.service=\"cloudkms.googleapis.com\" AND metric.label.response_code_class=one_of(\"4xx\", \"5xx\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 10
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Cloud KMS is rejecting or failing requests. Check the key versions' state and the IAM bindings on the keys."
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

# A push subscription whose oldest message keeps ageing has a function that is
# down, crashing or too slow: Pub/Sub keeps redelivering and nothing is acked.
resource "google_monitoring_alert_policy" "push_backlog" {
  count = length(var.push_subscriptions) > 0 ? 1 : 0

  project               = var.project_id
  display_name          = "Pub/Sub deliveries to a function are not acknowledged"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.channels

  conditions {
    display_name = "Oldest unacknowledged message older than ${var.backlog_age_threshold_seconds} s"

    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=one_of(${join(", ", [for name in var.push_subscriptions : "\"${name}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = var.backlog_age_threshold_seconds
      duration        = "300s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A function behind a push subscription is not acknowledging messages. Check its logs and its latest revision; messages are kept for 7 days and move to the dead-letter topic after the configured attempts."
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  count = length(var.dead_letter_subscriptions) > 0 ? 1 : 0

  project               = var.project_id
  display_name          = "Messages in a dead-letter subscription"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.channels

  conditions {
    display_name = "Undelivered dead-lettered messages"

    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=one_of(${join(", ", [for name in var.dead_letter_subscriptions : "\"${name}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Messages failed every delivery attempt. Pull them from the dead-letter subscription, fix the cause, and republish them to the original topic."
  }

  alert_strategy {
    auto_close = "86400s"
  }
}
