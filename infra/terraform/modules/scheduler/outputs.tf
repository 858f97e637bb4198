output "job_ids" {
  description = "Resource id of each job, by name."
  value       = { for name, job in google_cloud_scheduler_job.this : name => job.id }
}
