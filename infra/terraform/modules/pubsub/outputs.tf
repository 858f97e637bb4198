output "topic_ids" {
  description = "Topic resource id (projects/P/topics/T), by topic name."
  value       = { for name, topic in google_pubsub_topic.this : name => topic.id }
}

output "subscription_names" {
  description = "Names of the subscriptions created."
  value       = keys(google_pubsub_subscription.this)
}
