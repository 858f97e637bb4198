output "key_ring_id" {
  description = "Resource id of the key ring."
  value       = google_kms_key_ring.this.id
}

output "key_ids" {
  description = "Resource id of each crypto key, by alias (api_keys, credentials)."
  value       = { for alias, key in google_kms_crypto_key.this : alias => key.id }
}
