output "function_urls" {
  description = "HTTPS URL of each function, by topology name."
  value       = module.functions.uris
}

output "function_service_accounts" {
  description = "Service account email of each function, by topology name."
  value       = { for name, account in google_service_account.function : name => account.email }
}

output "kms_key_ids" {
  description = "Crypto key resource ids, by alias (api_keys, credentials)."
  value       = module.kms.key_ids
}

output "dataset_id" {
  description = "BigQuery dataset of the tenant tables."
  value       = module.bigquery.dataset_id
}

output "backup_bucket" {
  description = "Bucket that receives the backups."
  value       = module.backup_bucket.name
}

output "source_bucket" {
  description = "Bucket that holds the uploaded function bundles."
  value       = module.functions.source_bucket
}

output "secret_ids" {
  description = "Secrets whose values must be added with gcloud before the functions that use them start."
  value       = module.secrets.secret_ids
}
