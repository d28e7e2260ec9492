output "ecr_repository_url" {
  description = "Push the reflex image here, tagged with image_tag."
  value       = module.reflex.ecr_repository_url
}

output "alarm_topic_arn" {
  description = "Topic other alarms can publish to, to reach reflex."
  value       = module.reflex.alarm_topic_arn
}

output "alarm_name" {
  description = "Name of the alarm reflex's rule must match."
  value       = aws_cloudwatch_metric_alarm.unhealthy_hosts.alarm_name
}

output "dead_letter_queue_url" {
  description = "Where messages reflex could not handle end up."
  value       = module.reflex.dead_letter_queue_url
}

output "log_group_name" {
  description = "reflex's logs: what it decided and did, per message."
  value       = module.reflex.log_group_name
}

output "rules_source" {
  description = "Where reflex reads the rules from: the module's bucket, under rules/."
  value       = module.reflex.rules_source
}
