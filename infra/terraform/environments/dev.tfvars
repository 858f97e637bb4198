# Example values for the dev environment; copy the file and set your own.
# Apply with: terraform apply -var-file=environments/dev.tfvars
project_id  = "convergence-dev"
environment = "dev"
region      = "us-central1"

log_level             = "DEBUG"
backup_retention_days = 7
max_instances         = 5

# SHA-256 hex of the operator token (docs/deploy.md, "Operator token").
# operator_token_sha256 = "..."

cors_allowed_origins  = []
alert_email_addresses = ["secops@example.com"]

# Tenant analysts who query BigQuery directly see their tenant's rows only.
# tenant_analyst_groups = {
#   acme_corp = ["group:acme-analysts@example.com"]
# }
# all_rows_readers = ["group:convergence-operators@example.com"]

# pipeline_reader_service_account = "pipelines@convergence-dev.iam.gserviceaccount.com"
