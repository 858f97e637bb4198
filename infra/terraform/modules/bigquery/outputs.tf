output "dataset_id" {
  description = "Dataset id."
  value       = google_bigquery_dataset.this.dataset_id
}

output "table_ids" {
  description = "Fully qualified table id (project.dataset.table), by table name."
  value = {
    for name, table in google_bigquery_table.this :
    name => "${var.project_id}.${table.dataset_id}.${table.table_id}"
  }
}
