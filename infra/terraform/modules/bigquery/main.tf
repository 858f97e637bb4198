# The dataset and its tables. Columns, partitioning and clustering come from
# shared/store/schema.py through the JSON files in schema_dir; a test checks
# that the committed files match the code.

locals {
  table_options = jsondecode(file("${var.schema_dir}/tables.json"))

  analyst_members = distinct(flatten(values(var.tenant_analyst_groups)))

  analyst_bindings = {
    for pair in setproduct(var.analyst_tables, local.analyst_members) :
    "analyst/${pair[0]}/${pair[1]}" => { table = pair[0], member = pair[1] }
  }

  tenant_policies = {
    for pair in setproduct(keys(local.table_options), keys(var.tenant_analyst_groups)) :
    "${pair[0]}/${pair[1]}" => { table = pair[0], tenant_id = pair[1] }
  }
}

resource "google_bigquery_dataset" "this" {
  #checkov:skip=CKV_GCP_81:Secret columns are envelope-encrypted by the functions with the Cloud KMS keys; the rest uses Google-managed encryption.
  project                     = var.project_id
  dataset_id                  = var.dataset_id
  location                    = var.location
  description                 = "Tenants, users, API keys, credentials, usage and the audit log."
  default_table_expiration_ms = var.default_table_expiration_ms
  delete_contents_on_destroy  = false
}

resource "google_bigquery_table" "this" {
  #checkov:skip=CKV_GCP_80:Secret columns are envelope-encrypted by the functions with the Cloud KMS keys; the rest uses Google-managed encryption.
  for_each = local.table_options

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.this.dataset_id
  table_id            = each.key
  schema              = file("${var.schema_dir}/${each.key}.json")
  deletion_protection = true
  clustering          = try(each.value.clustering.fields, null)

  dynamic "time_partitioning" {
    for_each = can(each.value.timePartitioning) ? [each.value.timePartitioning] : []
    content {
      type  = time_partitioning.value.type
      field = time_partitioning.value.field
    }
  }
}

resource "google_bigquery_table_iam_member" "this" {
  for_each = merge(
    var.table_iam_members,
    {
      for id, binding in local.analyst_bindings : id => {
        table  = binding.table
        role   = "roles/bigquery.dataViewer"
        member = binding.member
      }
    },
  )

  project    = var.project_id
  dataset_id = google_bigquery_dataset.this.dataset_id
  table_id   = google_bigquery_table.this[each.value.table].table_id
  role       = each.value.role
  member     = each.value.member
}

# Row-level security for people who query the tables directly. Once a table
# has any row access policy, a reader not granted one sees no rows at all, so
# the service accounts get a policy that passes every row.
resource "google_bigquery_row_access_policy" "all_rows" {
  for_each = {
    for table, members in var.all_rows_members : table => members
    if length(members) > 0 && length(var.tenant_analyst_groups) > 0
  }

  project          = var.project_id
  dataset_id       = google_bigquery_dataset.this.dataset_id
  table_id         = google_bigquery_table.this[each.key].table_id
  policy_id        = "service_accounts_all_rows"
  filter_predicate = "TRUE"
  grantees         = sort(each.value)
}

resource "google_bigquery_row_access_policy" "tenant" {
  for_each = local.tenant_policies

  project    = var.project_id
  dataset_id = google_bigquery_dataset.this.dataset_id
  table_id   = google_bigquery_table.this[each.value.table].table_id
  policy_id  = "tenant_${each.value.tenant_id}"
  # Tenant ids match [a-z][a-z0-9_]{2,49} (checked in variables.tf of the
  # root), so the literal needs no escaping.
  filter_predicate = "tenant_id = '${each.value.tenant_id}'"
  grantees         = sort(var.tenant_analyst_groups[each.value.tenant_id])
}
