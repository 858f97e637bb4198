variable "project_id" {
  type        = string
  description = "Project that holds the dataset."
}

variable "dataset_id" {
  type        = string
  description = "Dataset of the tenant tables (TENANTS_DATASET_ID)."
}

variable "location" {
  type        = string
  description = "BigQuery location of the dataset, e.g. US or europe-west1."
}

variable "schema_dir" {
  type        = string
  description = "Folder with <table>.json column lists and tables.json, written by python -m shared.store.schema --export."
}

variable "table_iam_members" {
  type = map(object({
    table  = string
    role   = string
    member = string
  }))
  description = "Table-level IAM bindings by a stable id."
}

variable "all_rows_members" {
  type        = map(list(string))
  description = "Members that read every row of a table despite the tenant row access policies, by table name (the service accounts)."
}

variable "tenant_analyst_groups" {
  type        = map(list(string))
  description = "Members (group:..., user:...) that may read one tenant's rows, by tenant id."
}

variable "analyst_tables" {
  type        = list(string)
  description = "Tables the tenant analysts may query; they see only their tenant's rows."
}

variable "default_table_expiration_ms" {
  type        = number
  description = "Expiry of new tables in milliseconds; null keeps tables forever."
  default     = null
}
