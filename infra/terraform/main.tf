# reflex: alarm topic → queue → daemon on ECS Fargate, with least-privilege IAM.
#
# Files by concern:
#   messaging.tf  alarm topic, queue, dead-letter queue and their policies
#   kms.tf        the customer-managed key (created unless one is passed in)
#   iam.tf        the daemon's role and policy, the ECS execution role
#   ecs.tf        image repository, cluster, task definition, service, logs
#   monitoring.tf alarms on reflex itself, and the task-stopped event rule
#   state.tf      the DynamoDB table shared by replicas (state_backend = "dynamodb")
#   rules.tf      the rules bucket and its objects (rules_dir set)

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

# The region is read from `id`: `name` is deprecated in provider 6 and
# `region` does not exist in 5. The partition and its DNS suffix come from
# aws_partition, so the module works in aws-cn (amazonaws.com.cn) and
# aws-us-gov as well: ARNs use the partition, endpoint host names (as in
# kms:ViaService) the DNS suffix. Service principals are another matter:
# cloudwatch, sns, events and ecs-tasks are "<service>.amazonaws.com" in
# every partition, while CloudWatch Logs' regional principal takes the
# partition's suffix (the provider's aws_service_principal table, taken
# from AWS CDK's region-info).
locals {
  partition      = data.aws_partition.current.partition
  dns_suffix     = data.aws_partition.current.dns_suffix
  logs_principal = "logs.${data.aws_region.current.id}.${data.aws_partition.current.dns_suffix}"
  region         = data.aws_region.current.id
  account_id     = data.aws_caller_identity.current.account_id

  # IAM is global to the account, everything else here is regional: the role
  # names carry the region, so a second stack in another region does not
  # collide (EntityAlreadyExists).
  iam_name_prefix = coalesce(var.iam_role_name_prefix, "${var.name}-${local.region}")

  # The alarm topic's ARN, computed from its name so that the KMS key policy
  # can name the topic before the topic (encrypted with that key) exists.
  alarm_topic_arn = "arn:${local.partition}:sns:${local.region}:${local.account_id}:${var.name}"
  # Every CloudWatch alarm of this account and region.
  cloudwatch_alarm_arns = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:*"

  # Which key encrypts the alarm topic (and the log group, when it is a
  # customer-managed key). See var.kms_key.
  create_kms_key      = var.kms_key == "create"
  aws_managed_sns_key = var.kms_key == "alias/aws/sns"
  customer_kms_key_arn = (
    local.create_kms_key ? aws_kms_key.reflex[0].arn :
    local.aws_managed_sns_key ? null : var.kms_key
  )
  topic_kms_key_id = local.aws_managed_sns_key ? "alias/aws/sns" : local.customer_kms_key_arn

  # The daemon's timing, in one place. Each value is passed to the container
  # (REFLEX_VISIBILITY_TIMEOUT, REFLEX_HEARTBEAT, REFLEX_SHUTDOWN_GRACE) or
  # set on the queue and the task, so the daemon and AWS never disagree.
  #
  # The visibility timeout must outlast one message's handling, or a second
  # receive could run the same remediation again while the first is still in
  # flight. Twice the longest action covers an action plus one in-process
  # retry; 30 s more covers polling, decoding and the delete call. SQS caps
  # the timeout at 12 hours. The daemon requests the same value on every
  # receive, so the queue's setting and the daemon's are one number.
  visibility_timeout_seconds = min(43200, var.longest_action_seconds * 2 + 30)

  # While a message is worked on, its visibility is extended this often: a
  # third of the timeout, so two extensions can fail before it lapses.
  heartbeat_seconds = max(1, floor(local.visibility_timeout_seconds / 3))

  # On SIGTERM the daemon stops receiving and lets in-flight actions finish
  # for up to shutdown_grace, then exits. ECS sends SIGKILL stopTimeout after
  # SIGTERM, and Fargate allows at most 120 s, so the grace is 5 s shorter
  # than the stop timeout: the daemon exits on its own, having made the
  # messages it had not started visible again.
  shutdown_grace_seconds = min(115, var.longest_action_seconds + 5)
  stop_timeout_seconds   = local.shutdown_grace_seconds + 5

  # /readyz is served on loopback only; the ECS health check runs
  # `reflex health` inside the container against the same address.
  metrics_listen = "127.0.0.1:9464"

  # Where the local state store lives in the container: a task volume,
  # because the root filesystem is read-only.
  state_volume_path = "/var/lib/reflex"
  state_path        = "${local.state_volume_path}/state.db"
  state_dynamodb    = var.state_backend == "dynamodb"

  # The rules from S3 (rules.tf): the files of var.rules_dir under this
  # prefix, polled by every task. The last good set is cached on the same
  # task volume as the local state store (the image's /var/lib/reflex,
  # owned by the daemon's user), so a restarted container starts even while
  # S3 is unreachable; reflex writes the cache through a temporary file in
  # the same directory.
  rules_from_s3    = var.rules_dir != null
  rules_prefix     = "rules/"
  rules_source     = local.rules_from_s3 ? "s3://${aws_s3_bucket.rules[0].id}/${local.rules_prefix}" : null
  rules_cache_path = "${local.state_volume_path}/rules-cache.json"
  # The task volume exists for the local state store, the rules cache, or both.
  task_volume = !local.state_dynamodb || local.rules_from_s3

  # Computed from names rather than resource attributes so the KMS key policy
  # can name the log group before the log group exists.
  log_group_name = "/ecs/${var.name}"
  log_group_arn  = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"

  # Topics the daemon may publish to: the operators' topic plus any topic a
  # rule notifies.
  notification_topic_arns = distinct(concat([var.operator_topic_arn], var.notification_topic_arns))

  # Keys of those topics the daemon may use through SNS: the ones listed, and
  # the operator topic's own key when it is a customer-managed key.
  operator_topic_customer_key = var.operator_topic_kms_key != null && var.operator_topic_kms_key != "alias/aws/sns"
  notification_topic_kms_key_arns = distinct(concat(
    local.operator_topic_customer_key ? [var.operator_topic_kms_key] : [],
    var.notification_topic_kms_key_arns,
  ))

  auto_scaling_group_arns = [
    for name in var.auto_scaling_group_names :
    "arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${name}"
  ]

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

# CloudWatch alarms on reflex itself publish to the operator topic. If that
# topic is encrypted, CloudWatch needs kms:GenerateDataKey* and kms:Decrypt in
# the key's policy, which the AWS-managed SNS key cannot grant: the alarms
# would fire and nobody would be paged.
check "operator_topic_key_lets_cloudwatch_publish" {
  assert {
    condition     = var.operator_topic_kms_key != "alias/aws/sns"
    error_message = "The operator topic is encrypted with the AWS-managed key alias/aws/sns. CloudWatch alarms (dead letters, oldest message, not running) cannot publish to such a topic, so the alarms on reflex would page nobody. Encrypt the operator topic with a customer-managed key whose policy grants cloudwatch.amazonaws.com kms:GenerateDataKey* and kms:Decrypt (see README), and pass its ARN as operator_topic_kms_key."
  }
}
