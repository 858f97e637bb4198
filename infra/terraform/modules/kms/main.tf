# The key ring and the two envelope keys. Deleting either key would make every
# stored API key or credential unreadable, so both refuse to be destroyed.

resource "google_kms_key_ring" "this" {
  project  = var.project_id
  name     = var.keyring_name
  location = var.location

  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key" "this" {
  for_each = var.key_names

  name            = each.value
  key_ring        = google_kms_key_ring.this.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.rotation_period

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.protection_level
  }

  lifecycle {
    prevent_destroy = true
  }
}

# Old key versions stay enabled after a rotation, so data keys wrapped before
# it still decrypt; new data keys are wrapped with the primary version.
resource "google_kms_crypto_key_iam_member" "this" {
  for_each = var.iam_members

  crypto_key_id = google_kms_crypto_key.this[each.value.key].id
  role          = each.value.role
  member        = each.value.member
}
