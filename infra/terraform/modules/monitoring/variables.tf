variable "project_id" {
  type        = string
  description = "Project of the metrics and alert policies."
}

variable "service_names" {
  type        = list(string)
  description = "Cloud Run service names of the functions whose logs the metrics read."
}

variable "push_subscriptions" {
  type        = list(string)
  description = "Push subscriptions whose backlog means a function is down or failing."
}

variable "dead_letter_subscriptions" {
  type        = list(string)
  description = "Subscriptions of dead-letter topics; any message there needs an operator."
}

variable "alert_email_addresses" {
  type        = list(string)
  description = "Addresses that receive every alert by email."
}

variable "notification_channel_ids" {
  type        = list(string)
  description = "Existing notification channels (projects/P/notificationChannels/N) that also receive every alert."
}

variable "backlog_age_threshold_seconds" {
  type        = number
  description = "Age of the oldest unacknowledged push message that raises an alert."
  default     = 900
}
