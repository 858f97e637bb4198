# Secret containers only. Values are added out of band with
# `gcloud secrets versions add` (docs/deploy.md), so they never enter the
# Terraform state. A function reading a secret with no version fails to start.

resource "google_secret_manager_secret" "this" {
  for_each = var.accessors

  project   = var.project_id
  secret_id = each.key

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = {
    for pair in flatten([
      for secret, members in var.accessors : [
        for member in members : { secret = secret, member = member }
      ]
    ]) : "${pair.secret}/${pair.member}" => pair
  }

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
