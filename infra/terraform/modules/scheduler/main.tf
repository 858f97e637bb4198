# One job per entry under schedules: in infra/topology.yaml. Cloud Scheduler's
# service agent publishes the message; no service account of ours is involved.

resource "google_cloud_scheduler_job" "this" {
  for_each = { for job in var.jobs : job.name => job }

  project     = var.project_id
  region      = var.region
  name        = each.key
  description = "Publishes to ${each.value.topic} (infra/topology.yaml)."
  schedule    = each.value.schedule
  time_zone   = each.value.time_zone

  pubsub_target {
    topic_name = var.topic_ids[each.value.topic]
    data       = base64encode(jsonencode(each.value.payload))
  }

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "600s"
  }
}
