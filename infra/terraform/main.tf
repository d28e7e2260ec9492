# reflex: alarm topic → queue → daemon on ECS Fargate, with least-privilege IAM.
#
# Files by concern:
#   messaging.tf  alarm topic, queue, dead-letter queue and their policies
#   kms.tf        the customer-managed key (created unless one is passed in)
#   iam.tf        the daemon's role and policy, the ECS execution role
#   ecs.tf        image repository, cluster, task definition, service, logs
#   monitoring.tf alarms on reflex itself

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

# The region is read from `id`: `name` is deprecated in provider 6 and
# `region` does not exist in 5.
locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id
  account_id = data.aws_caller_identity.current.account_id

  # Which key encrypts the alarm topic (and the log group, when it is a
  # customer-managed key). See var.kms_key.
  create_kms_key      = var.kms_key == "create"
  aws_managed_sns_key = var.kms_key == "alias/aws/sns"
  customer_kms_key_arn = (
    local.create_kms_key ? aws_kms_key.reflex[0].arn :
    local.aws_managed_sns_key ? null : var.kms_key
  )
  topic_kms_key_id = local.aws_managed_sns_key ? "alias/aws/sns" : local.customer_kms_key_arn

  # The queue's visibility timeout must outlast one message's handling, or a
  # second receive could run the same remediation again while the first is
  # still in flight. Twice the longest action covers an action plus one
  # in-process retry; 30 s more covers polling, decoding and the delete call.
  # SQS caps the timeout at 12 hours.
  visibility_timeout_seconds = min(43200, var.longest_action_seconds * 2 + 30)

  # On SIGTERM the daemon stops receiving and lets in-flight actions finish.
  # Fargate allows at most 120 s between SIGTERM and SIGKILL.
  stop_timeout_seconds = min(120, var.longest_action_seconds + 10)

  # Computed from names rather than resource attributes so the KMS key policy
  # can name the log group before the log group exists.
  log_group_name = "/ecs/${var.name}"
  log_group_arn  = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"

  # Topics the daemon may publish to: the operators' topic plus any topic a
  # rule notifies.
  notification_topic_arns = distinct(concat([var.operator_topic_arn], var.notification_topic_arns))

  load_balancer_arns = [
    for name in var.load_balancer_names :
    "arn:${local.partition}:elasticloadbalancing:${local.region}:${local.account_id}:loadbalancer/${name}"
  ]

  container_name = "reflex"
  container_user = "65532:65532" # the distroless "nonroot" user the Dockerfile runs as
  image          = "${aws_ecr_repository.reflex.repository_url}:${var.image_tag}"
}

check "alarm_topic_key_lets_cloudwatch_publish" {
  assert {
    condition     = !local.aws_managed_sns_key
    error_message = "The alarm topic is encrypted with the AWS-managed key alias/aws/sns. CloudWatch alarms cannot publish to such a topic (its key policy cannot grant cloudwatch.amazonaws.com kms:GenerateDataKey), so alarms will not reach reflex. Leave kms_key at \"create\" or pass a customer-managed key ARN."
  }
}
