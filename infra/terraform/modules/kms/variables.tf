variable "project_id" {
  type        = string
  description = "Project that holds the key ring."
}

variable "location" {
  type        = string
  description = "Cloud KMS location of the key ring, e.g. us-central1 (the functions' KMS_LOCATION)."
}

variable "keyring_name" {
  type        = string
  description = "Key ring name (KMS_KEYRING)."
}

variable "key_names" {
  type        = map(string)
  description = "Crypto key name by alias: api_keys (KMS_API_KEY_NAME) and credentials (KMS_CREDENTIALS_KEY_NAME)."

  validation {
    condition     = toset(keys(var.key_names)) == toset(["api_keys", "credentials"])
    error_message = "key_names must have exactly the aliases api_keys and credentials."
  }
}

variable "protection_level" {
  type        = string
  description = "SOFTWARE or HSM for new key versions."

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.protection_level)
    error_message = "protection_level must be SOFTWARE or HSM."
  }
}

variable "rotation_period" {
  type        = string
  description = "Automatic rotation period of both keys, in seconds with an s suffix."
  default     = "7776000s" # 90 days
}

variable "iam_members" {
  type = map(object({
    key    = string
    role   = string
    member = string
  }))
  description = "Key-level IAM bindings by a stable id; key is an alias of key_names."

  validation {
    condition     = alltrue([for binding in values(var.iam_members) : contains(["api_keys", "credentials"], binding.key)])
    error_message = "Each binding's key must be api_keys or credentials."
  }
}
