# Settings of one environment. Each environment (dev, staging, prod) is its own
# project with its own state; environments/<env>.tfvars holds its values.

variable "project_id" {
  type        = string
  description = "Project of this environment; also KMS_PROJECT_ID, PUBSUB_PROJECT_ID and BIGQUERY_PROJECT_ID of the functions."
}

variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod. Labels every resource."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the source bucket and the scheduler jobs."
  default     = "us-central1"
}

variable "labels" {
  type        = map(string)
  description = "Extra labels on every resource that takes labels."
  default     = {}
}

variable "topology_file" {
  type        = string
  description = "Topology file with the topics, subscriptions, functions and schedules; the local stack reads the same file."
  default     = "../topology.yaml"
}

variable "bundle_dir" {
  type        = string
  description = "Folder with <function>.zip from `make package`, relative to this folder or absolute."
  default     = "../../build/functions"
}

# KMS (names match the functions' settings of the same name)

variable "kms_location" {
  type        = string
  description = "Location of the key ring (KMS_LOCATION); null means var.region."
  default     = null
}

variable "kms_keyring" {
  type        = string
  description = "Key ring name (KMS_KEYRING)."
  default     = "convergence-customer-keys"
}

variable "kms_api_key_name" {
  type        = string
  description = "Key that wraps the API-key data keys (KMS_API_KEY_NAME)."
  default     = "api-key-encryption"
}

variable "kms_credentials_key_name" {
  type        = string
  description = "Key that wraps the credential data keys (KMS_CREDENTIALS_KEY_NAME)."
  default     = "credentials-encryption"
}

variable "kms_protection_level" {
  type        = string
  description = "SOFTWARE or HSM for the key versions."
  default     = "SOFTWARE"
}

# BigQuery

variable "dataset_id" {
  type        = string
  description = "Dataset of the tenant tables (TENANTS_DATASET_ID)."
  default     = "tenants_metadata"

  validation {
    condition     = can(regex("^[A-Za-z0-9_]+$", var.dataset_id)) && length(var.dataset_id) <= 1024
    error_message = "dataset_id may contain letters, digits and underscores only."
  }
}

variable "bigquery_location" {
  type        = string
  description = "Location of the dataset and of the functions' query jobs (BIGQUERY_LOCATION)."
  default     = "US"
}

variable "tenant_analyst_groups" {
  type        = map(list(string))
  description = "Analysts who query the tables directly, by tenant id: each member (group:... or user:...) sees that tenant's rows only. Setting any entry turns on row-level security for every table."
  default     = {}

  validation {
    condition     = alltrue([for tenant in keys(var.tenant_analyst_groups) : can(regex("^[a-z][a-z0-9_]{2,49}$", tenant))])
    error_message = "Tenant ids match [a-z][a-z0-9_]{2,49}, as in the API keys."
  }
}

variable "analyst_tables" {
  type        = list(string)
  description = "Tables the tenant analysts may query. tenant_credentials is left out by default: its rows are ciphertext and provider metadata."
  default     = ["tenants", "users", "tenant_api_keys", "tenant_usage", "tenant_audit_logs"]
}

variable "all_rows_readers" {
  type        = list(string)
  description = "Operators (group:...) who read every row once row-level security is on; without this they see no rows."
  default     = []
}

variable "pipeline_reader_service_account" {
  type        = string
  description = "Email of the data pipelines' service account that decrypts stored credentials; null grants nothing."
  default     = null
}

# Storage

variable "storage_location" {
  type        = string
  description = "Location of the backup bucket."
  default     = "US"
}

variable "backup_bucket_name" {
  type        = string
  description = "Backup bucket name; null means <project_id>-convergence-backup (bucket names are global)."
  default     = null
}

variable "backup_retention_days" {
  type        = number
  description = "Days a backup is kept (BACKUP_RETENTION_DAYS of backup_exporter, and the bucket's lifecycle rule)."
  default     = 30
}

# Functions

variable "operator_token_sha256" {
  type        = string
  description = "SHA-256 hex of the operator bootstrap token (OPERATOR_TOKEN_SHA256 of issue_key); null disables the token."
  default     = null

  validation {
    condition     = var.operator_token_sha256 == null || can(regex("^[0-9a-f]{64}$", var.operator_token_sha256))
    error_message = "operator_token_sha256 must be 64 lower-case hex characters."
  }
}

variable "cors_allowed_origins" {
  type        = list(string)
  description = "Origins of the frontend allowed to call the HTTP functions (CORS_ALLOWED_ORIGINS)."
  default     = []
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of every function."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "http_invoker_members" {
  type        = list(string)
  description = "Who may reach the HTTP functions at the network level. allUsers, because tenants authenticate with API keys, not Google identities."
  default     = ["allUsers"]
}

variable "http_timeout_seconds" {
  type        = number
  description = "Timeout of the HTTP functions. Pub/Sub functions use their subscription's ack deadline."
  default     = 60
}

variable "function_memory" {
  type        = map(string)
  description = "Memory per function (e.g. 512Mi), by topology name; others get default_function_memory."
  default     = {}
}

variable "default_function_memory" {
  type        = string
  description = "Memory of a function not named in function_memory."
  default     = "512Mi"
}

variable "function_request_concurrency" {
  type        = map(number)
  description = "Requests one instance serves at once, by topology name; others serve 1. Above 1 the function gets a whole vCPU."
  default     = { audit_writer = 32 }

  validation {
    condition     = alltrue([for value in values(var.function_request_concurrency) : value >= 1 && value <= 1000])
    error_message = "function_request_concurrency values must be between 1 and 1000."
  }
}

variable "max_instances" {
  type        = number
  description = "Upper bound on the instances of each function."
  default     = 20
}

# Monitoring

variable "alert_email_addresses" {
  type        = list(string)
  description = "Email addresses that receive every alert."
  default     = []
}

variable "notification_channel_ids" {
  type        = list(string)
  description = "Existing notification channels (projects/P/notificationChannels/N) that receive every alert."
  default     = []
}

variable "enable_data_access_audit_logs" {
  type        = bool
  description = "Record Cloud Audit Logs Data Access entries for Cloud KMS and Cloud Storage in this project."
  default     = true
}
