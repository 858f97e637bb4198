output "uris" {
  description = "HTTPS URL (run.app) of each function's Cloud Run service, by topology name; push subscriptions also use it as the OIDC audience."
  value       = { for name, function in google_cloudfunctions2_function.this : name => function.service_config[0].uri }
}

output "service_names" {
  description = "Cloud Run service name of each function, by topology name; its logs carry resource.labels.service_name with this value."
  value       = local.service_names
}

output "source_bucket" {
  description = "Bucket that holds the uploaded source bundles."
  value       = google_storage_bucket.source.name
}
