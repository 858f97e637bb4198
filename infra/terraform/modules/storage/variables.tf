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
  description = "Days each backup object is kept: no one can delete or overwrite it sooner, and it is deleted once this many days old."

  validation {
    condition     = var.retention_days >= 1 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days, at least 1."
  }
}

variable "lock_retention" {
  type        = bool
  description = "Lock the retention policy. Irreversible: a locked policy can never be shortened or removed, nor the bucket deleted before its objects expire."
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
