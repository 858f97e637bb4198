# Topics and subscriptions exactly as infra/topology.yaml declares them, the
# same file the local stack builds the emulator from.
#
# Functions with a Pub/Sub trigger get a push subscription of our own rather
# than an Eventarc trigger: Eventarc creates and owns its subscription, whose
# ack deadline, retry policy and dead-letter topic Terraform cannot set, so the
# topology's values would not apply. functions-framework turns the push body
# into the same CloudEvent that Eventarc would deliver.

locals {
  pubsub_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  subscriptions = { for subscription in var.subscriptions : subscription.name => subscription }

  dead_letter_topics = toset([
    for subscription in var.subscriptions : subscription.dead_letter_policy.topic
    if subscription.dead_letter_policy != null
  ])

  dead_lettered = {
    for name, subscription in local.subscriptions : name => subscription
    if subscription.dead_letter_policy != null
  }
}

resource "google_pubsub_topic" "this" {
  #checkov:skip=CKV_GCP_83:Messages carry audit events and job requests, never a secret (shared.events rejects API keys in details); Google-managed encryption applies.
  for_each = toset(var.topics)

  project = var.project_id
  name    = each.key
}

resource "google_pubsub_subscription" "this" {
  for_each = local.subscriptions

  project = var.project_id
  name    = each.key
  topic   = google_pubsub_topic.this[each.value.topic].id
  # For a push subscription this is also the HTTP timeout of each delivery,
  # and the function's timeout is set to the same value.
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration

  # Pub/Sub deletes a subscription after 31 idle days unless told otherwise.
  expiration_policy {
    ttl = ""
  }

  dynamic "push_config" {
    for_each = each.value.push_function == null ? [] : [var.push_endpoints[each.value.push_function]]
    content {
      push_endpoint = push_config.value
      oidc_token {
        service_account_email = var.push_service_account.email
        audience              = push_config.value
      }
    }
  }

  dynamic "retry_policy" {
    for_each = each.value.retry_policy == null ? [] : [each.value.retry_policy]
    content {
      minimum_backoff = "${retry_policy.value.minimum_backoff_seconds}s"
      maximum_backoff = "${retry_policy.value.maximum_backoff_seconds}s"
    }
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter_policy == null ? [] : [each.value.dead_letter_policy]
    content {
      dead_letter_topic     = google_pubsub_topic.this[dead_letter_policy.value.topic].id
      max_delivery_attempts = dead_letter_policy.value.max_delivery_attempts
    }
  }
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = var.publishers

  project = var.project_id
  topic   = google_pubsub_topic.this[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

# Dead-lettering: the Pub/Sub service agent forwards a message to the
# dead-letter topic and acknowledges it on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_topics

  project = var.project_id
  topic   = google_pubsub_topic.this[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.dead_lettered

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Pub/Sub mints the push OIDC tokens as the push service account. Projects
# created after 8 April 2021 grant this implicitly; older ones need the binding.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = var.push_service_account.id
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
