# State of the dev environment: terraform init -backend-config=environments/dev.backend.hcl
bucket = "convergence-dev-tfstate"
prefix = "convergence/dev"
