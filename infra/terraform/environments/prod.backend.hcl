# State of the prod environment: terraform init -backend-config=environments/prod.backend.hcl
bucket = "convergence-prod-tfstate"
prefix = "convergence/prod"
