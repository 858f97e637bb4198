variable "project_id" {
  type        = string
  description = "Project that holds the bucket."
}

variable "name" {
  type        = string
  description = "Globally unique bucket name."
}

variable "location" {
  type        = string
  description = "Bucket location, e.g. US or europe-west1."
}

variable "retention_days" {
  type        = number
  description = "Days a backup is kept (the exporter's BACKUP_RETENTION_DAYS); a replaced or deleted backup stays recoverable for as long again."

  validation {
    condition     = var.retention_days >= 1 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days, at least 1."
  }
}

variable "soft_delete_days" {
  type        = number
  description = "Days a deleted object stays recoverable (Cloud Storage soft delete; 0 turns it off, else 7 to 90)."
  default     = 7
}

variable "iam_members" {
  type = map(object({
    role   = string
    member = string
  }))
  description = "Bucket-level IAM bindings by a stable id."
}
