variable "project_id" {
  type        = string
  description = "Project of the functions."
}

variable "region" {
  type        = string
  description = "Region of the functions and of the source bucket."
}

variable "source_bucket_name" {
  type        = string
  description = "Globally unique name of the bucket that receives the source bundles."
}

variable "build_service_account" {
  type = object({
    id    = string
    email = string
  })
  description = "Service account Cloud Build runs the function builds as."
}

variable "runtime" {
  type        = string
  description = "Cloud Functions runtime; it must match the Python that built the bundles' requirements (3.11)."
  default     = "python311"
}

variable "functions" {
  type = map(object({
    entry_point           = string
    signature_type        = string
    source_zip            = string
    service_account_email = string
    environment           = map(string)
    secret_environment    = map(string)
    timeout_seconds       = number
    memory                = string
    max_instances         = number
    request_concurrency   = number
    invoker_members       = list(string)
  }))
  description = "Functions by topology name: entry point, trigger kind (http or cloudevent), bundle path, identity, settings, requests served at once per instance, and who may invoke it. secret_environment maps a variable name to a Secret Manager secret id."

  validation {
    condition     = alltrue([for f in values(var.functions) : contains(["http", "cloudevent"], f.signature_type)])
    error_message = "signature_type must be http or cloudevent."
  }
}
