# Example values for the prod environment; copy the file and set your own.
# Apply with: terraform apply -var-file=environments/prod.tfvars
project_id  = "convergence-prod"
environment = "prod"
region      = "us-central1"

backup_retention_days = 90
kms_protection_level  = "HSM"

# SHA-256 hex of the operator token (docs/deploy.md, "Operator token").
# operator_token_sha256 = "..."

cors_allowed_origins  = []
alert_email_addresses = ["secops@example.com"]

# Tenant analysts who query BigQuery directly see their tenant's rows only.
# tenant_analyst_groups = {
#   acme_corp = ["group:acme-analysts@example.com"]
# }
# all_rows_readers = ["group:convergence-operators@example.com"]

# pipeline_reader_service_account = "pipelines@convergence-prod.iam.gserviceaccount.com"
