# State of the staging environment: terraform init -backend-config=environments/staging.backend.hcl
bucket = "convergence-staging-tfstate"
prefix = "convergence/staging"
