output "secret_ids" {
  description = "Secret ids created (values are added with gcloud)."
  value       = keys(google_secret_manager_secret.this)
}
