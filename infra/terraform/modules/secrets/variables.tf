variable "project_id" {
  type        = string
  description = "Project of the secrets."
}

variable "accessors" {
  type        = map(list(string))
  description = "Members granted roles/secretmanager.secretAccessor, by secret id. Every key becomes a secret, even with no accessor."
}
