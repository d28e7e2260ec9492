output "alarm_topic_arn" {
  description = "SNS topic to put in alarm_actions of the alarms reflex should act on."
  value       = aws_sns_topic.alarm.arn
}

output "queue_url" {
  description = "URL of the queue the daemon drains."
  value       = aws_sqs_queue.main.url
}

output "queue_arn" {
  description = "ARN of the queue the daemon drains."
  value       = aws_sqs_queue.main.arn
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dead_letter.url
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dead_letter.arn
}

output "daemon_role_arn" {
  description = "ARN of the daemon's role (the ECS task role)."
  value       = aws_iam_role.daemon.arn
}

output "daemon_policy_json" {
  description = "The daemon's IAM policy document, for review."
  value       = data.aws_iam_policy_document.daemon.json
}

output "ecr_repository_url" {
  description = "Repository to push reflex images to; tag them with the value you pass as image_tag."
  value       = aws_ecr_repository.reflex.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster running the daemon."
  value       = aws_ecs_cluster.reflex.name
}

output "ecs_service_name" {
  description = "ECS service running the daemon."
  value       = aws_ecs_service.daemon.name
}

output "task_definition_arn" {
  description = "Task definition revision the service runs."
  value       = aws_ecs_task_definition.daemon.arn
}

output "log_group_name" {
  description = "Log group of the daemon (its audit trail)."
  value       = aws_cloudwatch_log_group.daemon.name
}

output "kms_key_arn" {
  description = "Customer-managed key encrypting the alarm topic, the log group and the state table; null when the AWS-managed SNS key is used."
  value       = local.customer_kms_key_arn
}

output "security_group_id" {
  description = "Security group of the daemon task."
  value       = aws_security_group.daemon.id
}

output "managed_tag" {
  description = "Tag an instance must carry for reflex to terminate, reboot or stop it."
  value = {
    key   = var.managed_tag_key
    value = var.managed_tag_value
  }
}

output "task_stopped_rule_arn" {
  description = "EventBridge rule that sends task-stopped events with a non-zero exit code to the operator topic; allow it to publish there (aws:SourceArn)."
  value       = aws_cloudwatch_event_rule.task_stopped.arn
}

output "state_table_name" {
  description = "DynamoDB table of the shared state (state_backend = \"dynamodb\"); null with the local store."
  value       = local.state_dynamodb ? aws_dynamodb_table.state[0].name : null
}

output "daemon_settings" {
  description = "The timing passed to the daemon and set on the queue and the task, from one set of locals."
  value = {
    visibility_timeout_seconds = local.visibility_timeout_seconds
    heartbeat_seconds          = local.heartbeat_seconds
    shutdown_grace_seconds     = local.shutdown_grace_seconds
    stop_timeout_seconds       = local.stop_timeout_seconds
  }
}

output "rules_bucket_name" {
  description = "The bucket holding the rule files (rules_dir set); null when the rules are baked into the image."
  value       = local.rules_from_s3 ? aws_s3_bucket.rules[0].id : null
}

output "rules_source" {
  description = "Where every task reads its rules: s3://BUCKET/rules/ with rules_dir set, null with the image's rules. Pass it to `reflex iam-policy --rules-source` to print the same policy."
  value       = local.rules_source
}
