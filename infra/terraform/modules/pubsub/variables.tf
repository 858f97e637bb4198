variable "project_id" {
  type        = string
  description = "Project of the topics and subscriptions."
}

variable "project_number" {
  type        = string
  description = "Project number, which names the Pub/Sub service agent."
}

variable "topics" {
  type        = list(string)
  description = "Topic ids from the topology file."
}

variable "subscriptions" {
  type = list(object({
    name                 = string
    topic                = string
    push_function        = optional(string)
    ack_deadline_seconds = optional(number, 10)
    retry_policy = optional(object({
      minimum_backoff_seconds = optional(number, 10)
      maximum_backoff_seconds = optional(number, 600)
    }))
    dead_letter_policy = optional(object({
      topic                 = string
      max_delivery_attempts = number
    }))
  }))
  description = "Subscriptions from the topology file; push_function names the function to push to."
}

variable "push_endpoints" {
  type        = map(string)
  description = "HTTPS URL of each function that receives pushes, by function name."
}

variable "push_service_account" {
  type = object({
    id    = string
    email = string
  })
  description = "Service account whose OIDC token Pub/Sub sends with each push; it must hold roles/run.invoker on the functions."
}

variable "publishers" {
  type = map(object({
    topic  = string
    member = string
  }))
  description = "Topic-level roles/pubsub.publisher bindings by a stable id."
}

variable "message_retention_duration" {
  type        = string
  description = "How long a subscription keeps unacknowledged messages (Pub/Sub's maximum is 7 days)."
  default     = "604800s"
}
