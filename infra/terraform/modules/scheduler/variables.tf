variable "project_id" {
  type        = string
  description = "Project of the jobs."
}

variable "region" {
  type        = string
  description = "Cloud Scheduler region (a region where App Engine or Cloud Scheduler is available, e.g. us-central1)."
}

variable "jobs" {
  type = list(object({
    name      = string
    topic     = string
    schedule  = string
    time_zone = optional(string, "Etc/UTC")
    payload   = optional(any, {})
  }))
  description = "The schedules of the topology file: each publishes its payload as JSON to its topic on its cron schedule."
}

variable "topic_ids" {
  type        = map(string)
  description = "Topic resource id (projects/P/topics/T), by topic name."
}
