output "log_metric_names" {
  description = "Names of the log-based metrics (logging.googleapis.com/user/<name>)."
  value       = keys(google_logging_metric.this)
}

output "notification_channel_ids" {
  description = "Every channel the alert policies notify."
  value       = local.channels
}
