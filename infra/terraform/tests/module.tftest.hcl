# `terraform test` for the module, offline: the AWS provider is mocked (its
# schema comes from the local provider mirror, see scripts/check-terraform),
# so every expression is evaluated with real inputs but nothing is created.
# Run from infra/terraform: terraform init -backend=false && terraform test

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com" }
  }
  mock_data "aws_region" {
    defaults = { id = "eu-west-1", name = "eu-west-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  # The provider validates policy arguments as JSON; the statements
  # themselves are asserted on below.
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  # The provider validates ARN arguments; generated values are not ARNs.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = {
      arn            = "arn:aws:ecr:eu-west-1:123456789012:repository/reflex"
      repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/reflex"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/reflex" }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/reflex", id = "arn:aws:ecs:eu-west-1:123456789012:cluster/reflex" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/reflex:1" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/reflex-state" }
  }
  mock_resource "aws_cloudwatch_event_rule" {
    defaults = { arn = "arn:aws:events:eu-west-1:123456789012:rule/reflex-task-stopped" }
  }
  # S3 appends a unique suffix to bucket_prefix.
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn    = "arn:aws:s3:::reflex-rules-20260101000000000000000001"
      id     = "reflex-rules-20260101000000000000000001"
      bucket = "reflex-rules-20260101000000000000000001"
    }
  }
}

override_resource {
  target = aws_sns_topic.alarm
  values = { arn = "arn:aws:sns:eu-west-1:123456789012:reflex" }
}

override_resource {
  target = aws_sqs_queue.main
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:reflex"
    id  = "https://sqs.eu-west-1.amazonaws.com/123456789012/reflex"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/reflex"
  }
}

override_resource {
  target = aws_sqs_queue.dead_letter
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:reflex-dlq"
    id  = "https://sqs.eu-west-1.amazonaws.com/123456789012/reflex-dlq"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/reflex-dlq"
  }
}

variables {
  image_tag          = "3f2c1ab"
  vpc_id             = "vpc-0123456789abcdef0"
  subnet_ids         = ["subnet-0123456789abcdef0"]
  operator_topic_arn = "arn:aws:sns:eu-west-1:123456789012:oncall"
}

run "defaults" {
  assert {
    condition     = aws_sqs_queue.main.visibility_timeout_seconds == 150
    error_message = "The visibility timeout must be 2 x longest_action_seconds (60) + 30 s."
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.main.redrive_policy).deadLetterTargetArn == aws_sqs_queue.dead_letter.arn
    error_message = "The main queue must redrive to the dead-letter queue."
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.main.redrive_policy).maxReceiveCount == 5
    error_message = "maxReceiveCount must default to 5."
  }

  assert {
    condition     = aws_sqs_queue.dead_letter.message_retention_seconds == 1209600
    error_message = "The dead-letter queue must keep messages 14 days."
  }

  assert {
    condition     = jsondecode(aws_sqs_queue_redrive_allow_policy.dead_letter.redrive_allow_policy).sourceQueueArns == [aws_sqs_queue.main.arn]
    error_message = "Only the main queue may redrive to the dead-letter queue."
  }

  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.main_queue.statement :
      s.effect == "Deny" || toset(one(s.condition).values) == toset([aws_sns_topic.alarm.arn])
    ])
    error_message = "The queue policy must admit only the alarm topic."
  }

  assert {
    condition     = length(aws_kms_key.reflex) == 1 && aws_sns_topic.alarm.kms_master_key_id == aws_kms_key.reflex[0].arn
    error_message = "By default the module creates a key and encrypts the alarm topic with it."
  }

  assert {
    condition     = aws_cloudwatch_log_group.daemon.kms_key_id == aws_kms_key.reflex[0].arn && aws_cloudwatch_log_group.daemon.retention_in_days == 365
    error_message = "The log group must be encrypted with the key and keep a year of logs."
  }

  assert {
    condition = toset(one([
      for s in data.aws_iam_policy_document.daemon.statement : s.resources if s.sid == "RemediateTaggedInstances"
    ])) == toset(["arn:aws:ec2:eu-west-1:123456789012:instance/*"])
    error_message = "Destructive EC2 actions must be granted on this account's and region's instances only."
  }

  assert {
    condition = one(one([
      for s in data.aws_iam_policy_document.daemon.statement : s.condition if s.sid == "RemediateTaggedInstances"
    ])).variable == "ec2:ResourceTag/reflex:managed"
    error_message = "Destructive EC2 actions must be conditioned on ec2:ResourceTag/reflex:managed."
  }

  assert {
    condition = length([
      for s in data.aws_iam_policy_document.daemon.statement : s
      if contains(["ReadInstanceHealth", "DeregisterFromManagedLoadBalancers"], s.sid)
    ]) == 0
    error_message = "Without load_balancer_names there must be no load-balancer permissions."
  }

  assert {
    condition = toset(one([
      for s in data.aws_iam_policy_document.daemon.statement : s.resources if s.sid == "NotifyOperators"
    ])) == toset([var.operator_topic_arn])
    error_message = "sns:Publish must be granted on the operator topic only."
  }

  assert {
    condition     = length(aws_iam_role_policy.daemon_kms) == 0
    error_message = "No notification-key policy without notification_topic_kms_key_arns."
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value
      } == {
      AWS_REGION                = "eu-west-1"
      REFLEX_QUEUE_URL          = aws_sqs_queue.main.url
      REFLEX_DLQ_URL            = aws_sqs_queue.dead_letter.url
      REFLEX_TRUSTED_TOPIC_ARNS = aws_sns_topic.alarm.arn
      REFLEX_METRICS_LISTEN     = "127.0.0.1:9464"
      REFLEX_VISIBILITY_TIMEOUT = "150s"
      REFLEX_HEARTBEAT          = "50s"
      REFLEX_SHUTDOWN_GRACE     = "65s"
      REFLEX_STATE_BACKEND      = "local"
      REFLEX_STATE_PATH         = "/var/lib/reflex/state.db"
    }
    error_message = "The container must get exactly the queue URLs, the trusted topic, the region, the listen address, the timing and the local state path."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].image == "${aws_ecr_repository.reflex.repository_url}:3f2c1ab"
    error_message = "The task must run the image_tag from the module's repository."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].stopTimeout == 70
    error_message = "The stop timeout must be longest_action_seconds + 10."
  }

  assert {
    condition     = aws_ecs_service.daemon.deployment_maximum_percent == 100 && aws_ecs_service.daemon.deployment_minimum_healthy_percent == 0
    error_message = "A deployment must never run two daemons at once."
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.not_running) == 1 && aws_cloudwatch_metric_alarm.not_running[0].treat_missing_data == "breaching" && aws_cloudwatch_metric_alarm.not_running[0].dimensions.Queue == aws_sqs_queue.main.name && aws_cloudwatch_metric_alarm.not_running[0].actions_enabled
    error_message = "The not-running alarm must watch this queue's heartbeat and treat silence as breaching."
  }

  # --- the settings the container gets match the queue and the task ---------

  assert {
    condition = (
      { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_VISIBILITY_TIMEOUT == "${aws_sqs_queue.main.visibility_timeout_seconds}s" &&
      tonumber(trimsuffix({ for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_HEARTBEAT, "s")) * 3 <= aws_sqs_queue.main.visibility_timeout_seconds &&
      tonumber(trimsuffix({ for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_SHUTDOWN_GRACE, "s")) + 5 == jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].stopTimeout
    )
    error_message = "REFLEX_VISIBILITY_TIMEOUT must equal the queue's visibility timeout, REFLEX_HEARTBEAT be at most a third of it, and REFLEX_SHUTDOWN_GRACE end 5 s before the ECS stop timeout."
  }

  assert {
    condition     = output.daemon_settings == { visibility_timeout_seconds = 150, heartbeat_seconds = 50, shutdown_grace_seconds = 65, stop_timeout_seconds = 70 }
    error_message = "The daemon settings output must show the derived timing."
  }

  # --- DescribeAlarms is never narrower than the daemon's call needs --------

  assert {
    condition = alltrue([
      for s in concat(data.aws_iam_policy_document.daemon.statement, data.aws_iam_policy_document.read_alarms.statement) :
      toset(s.resources) == toset(["*"]) && length(s.condition) == 0
      if contains(s.actions, "cloudwatch:DescribeAlarms")
      ]) && length([
      for s in data.aws_iam_policy_document.read_alarms.statement : s
      if contains(s.actions, "cloudwatch:DescribeAlarms") && s.effect == "Allow"
    ]) == 1
    error_message = "cloudwatch:DescribeAlarms must be granted on \"*\" without conditions: the daemon asks for composite alarms too, which needs \"*\"."
  }

  assert {
    condition     = contains(data.aws_iam_policy_document.daemon.source_policy_documents, data.aws_iam_policy_document.read_alarms.json)
    error_message = "The daemon policy must include the DescribeAlarms document."
  }

  # --- the heartbeat and task-stopped paging --------------------------------

  assert {
    condition = (
      jsondecode(aws_cloudwatch_event_rule.task_stopped.event_pattern).detail.lastStatus == ["STOPPED"] &&
      jsondecode(aws_cloudwatch_event_rule.task_stopped.event_pattern).detail.clusterArn == [aws_ecs_cluster.reflex.arn] &&
      jsondecode(aws_cloudwatch_event_rule.task_stopped.event_pattern).detail.containers == { name = ["reflex"], exitCode = [{ "anything-but" = 0 }] } &&
      aws_cloudwatch_event_target.task_stopped.arn == var.operator_topic_arn &&
      aws_cloudwatch_event_target.task_stopped.rule == aws_cloudwatch_event_rule.task_stopped.name
    )
    error_message = "ECS task-stopped events with a non-zero exit code of the reflex container must go to the operator topic."
  }

  # --- the container health check -------------------------------------------

  assert {
    condition     = jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].healthCheck.command == ["CMD", "/usr/local/bin/reflex", "health", "--listen", { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_METRICS_LISTEN]
    error_message = "The health check must run `reflex health` (no shell in the image) against the address the daemon listens on."
  }

  # --- IAM that survives a second region and org guardrails -----------------

  assert {
    condition     = aws_iam_role.daemon.name == "reflex-eu-west-1-daemon" && aws_iam_role.execution.name == "reflex-eu-west-1-execution" && aws_iam_role.daemon.path == "/" && aws_iam_role.daemon.permissions_boundary == null
    error_message = "Role names must carry the region; default path /, no boundary."
  }

  assert {
    condition = toset([
      for c in one([for s in data.aws_iam_policy_document.daemon.statement : s if s.sid == "DescribeInstances"]).condition :
      "${c.test} ${c.variable} ${join(",", c.values)}"
    ]) == toset(["StringEquals ec2:Region eu-west-1"])
    error_message = "DescribeInstances must be pinned to this region."
  }

  # --- ECR and egress --------------------------------------------------------

  assert {
    condition     = alltrue([for r in jsondecode(aws_ecr_lifecycle_policy.reflex.policy).rules : r.selection.tagStatus == "untagged"])
    error_message = "The ECR lifecycle policy may expire untagged images only: a tagged one may be the deployed image."
  }

  assert {
    condition     = length(aws_security_group.daemon.egress) == 1 && toset(one(aws_security_group.daemon.egress).cidr_blocks) == toset(["0.0.0.0/0"]) && one(aws_security_group.daemon.egress).from_port == 443
    error_message = "By default the task may open HTTPS to 0.0.0.0/0 and nothing else."
  }

  # --- who may write to the topic and the queues (issue 10) -----------------

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.alarm_topic.statement : s
      if s.effect == "Deny" && toset(s.actions) == toset(["sns:Publish"]) && one(s.principals).identifiers == toset(["*"])
      && toset([for c in s.condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset(["ArnNotLike aws:SourceArn arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"])
    ]) != null
    error_message = "The topic policy must deny sns:Publish unless aws:SourceArn is a CloudWatch alarm of this account and region."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.main_queue.statement : s
      if s.effect == "Deny" && toset(s.actions) == toset(["sqs:SendMessage"]) && one(s.principals).identifiers == toset(["*"])
      && toset([for c in s.condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset(["ArnNotEquals aws:SourceArn ${aws_sns_topic.alarm.arn}"])
    ]) != null
    error_message = "The queue policy must deny sqs:SendMessage unless aws:SourceArn is the alarm topic (no redrive role given)."
  }

  assert {
    condition = one([
      for s in data.aws_iam_policy_document.dead_letter_queue.statement : s
      if s.effect == "Deny" && toset(s.actions) == toset(["sqs:SendMessage"]) && one(s.principals).identifiers == toset(["*"])
      && toset([for c in s.condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset(["ArnNotEquals aws:PrincipalArn ${aws_iam_role.daemon.arn}", "ArnNotEquals aws:SourceArn ${aws_sqs_queue.main.arn}"])
    ]) != null && aws_sqs_queue_policy.dead_letter.queue_url == aws_sqs_queue.dead_letter.id
    error_message = "The dead-letter queue policy must deny sqs:SendMessage except from the reflex role and SQS redrive from the main queue."
  }

  assert {
    condition = length([
      for s in data.aws_iam_policy_document.dead_letter_queue.statement : s
      if s.effect == "Deny" && toset(s.actions) == toset(["sqs:*"]) && toset([for c in s.condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset(["Bool aws:SecureTransport false"])
    ]) == 1
    error_message = "The dead-letter queue must refuse requests without TLS, like the main queue."
  }

  assert {
    condition = toset([
      for c in one([for s in data.aws_iam_policy_document.kms[0].statement : s if s.sid == "CloudWatchAlarmsPublishToTopic"]).condition :
      "${c.test} ${c.variable} ${join(",", c.values)}"
      ]) == toset([
      "StringEquals aws:SourceAccount 123456789012",
      "ArnLike aws:SourceArn arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*",
      "StringEquals kms:EncryptionContext:aws:sns:topicArn ${aws_sns_topic.alarm.arn}",
    ])
    error_message = "The key's grant to cloudwatch.amazonaws.com must carry the confused-deputy conditions: this account, its alarms, this topic."
  }

  assert {
    condition     = local.alarm_topic_arn == aws_sns_topic.alarm.arn
    error_message = "The topic ARN computed for the key policy must be the topic's ARN."
  }

  # --- rules: baked into the image by default --------------------------------

  assert {
    condition = (
      length(aws_s3_bucket.rules) == 0 && length(aws_s3_object.rule) == 0 &&
      length(aws_iam_role_policy.daemon_rules_kms) == 0 &&
      length([for s in data.aws_iam_policy_document.daemon.statement : s if anytrue([for a in s.actions : startswith(a, "s3:")])]) == 0 &&
      output.rules_source == null && output.rules_bucket_name == null
    )
    error_message = "Without rules_dir there must be no rules bucket, no S3 permission and no rules source: the task runs the image's rules."
  }

  # --- state: local by default ------------------------------------------------

  assert {
    condition = (
      length(aws_dynamodb_table.state) == 0 &&
      length([for s in data.aws_iam_policy_document.daemon.statement : s if s.sid == "StateTable"]) == 0 &&
      jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].mountPoints == [{ sourceVolume = "state", containerPath = "/var/lib/reflex", readOnly = false }] &&
      one(aws_ecs_task_definition.daemon.volume).name == "state" &&
      output.state_table_name == null
    )
    error_message = "The local backend needs no table and no DynamoDB permission, and a writable task volume for its file."
  }
}

run "load_balancers_scope_deregistration" {
  variables {
    load_balancer_names = ["web", "api"]
  }

  assert {
    condition = toset(one([
      for s in data.aws_iam_policy_document.daemon.statement : s.resources if s.sid == "DeregisterFromManagedLoadBalancers"
      ])) == toset([
      "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/web",
      "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/api",
    ])
    error_message = "Deregistration must be granted on the named load balancers only."
  }
}

run "notification_keys_only_through_sns" {
  variables {
    notification_topic_kms_key_arns = ["arn:aws:kms:eu-west-1:123456789012:key/0b6a8c1e-1111-2222-3333-444455556666"]
  }

  assert {
    condition     = length(aws_iam_role_policy.daemon_kms) == 1 && toset(one(one(data.aws_iam_policy_document.daemon_kms[0].statement).condition).values) == toset(["sns.eu-west-1.amazonaws.com"])
    error_message = "Notification keys must be usable through SNS only."
  }
}

run "own_customer_key" {
  variables {
    kms_key = "arn:aws:kms:eu-west-1:123456789012:key/0b6a8c1e-1111-2222-3333-444455556666"
  }

  assert {
    condition     = length(aws_kms_key.reflex) == 0 && aws_sns_topic.alarm.kms_master_key_id == var.kms_key && aws_cloudwatch_log_group.daemon.kms_key_id == var.kms_key
    error_message = "A given key must be used, and no key created."
  }
}

run "aws_managed_key_warns" {
  variables {
    kms_key = "alias/aws/sns"
  }

  expect_failures = [check.alarm_topic_key_lets_cloudwatch_publish]

  assert {
    condition     = length(aws_kms_key.reflex) == 0 && aws_sns_topic.alarm.kms_master_key_id == "alias/aws/sns" && aws_cloudwatch_log_group.daemon.kms_key_id == null
    error_message = "The AWS-managed key must be used for the topic only."
  }
}

run "paused" {
  variables {
    desired_count = 0
  }

  # No alarm at all while paused, so a resume creates it afresh (from
  # INSUFFICIENT_DATA), and it pages if no heartbeat comes.
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.not_running) == 0
    error_message = "A paused daemon must not page: the heartbeat alarm's count must follow desired_count."
  }
}

run "dynamodb_replicas" {
  variables {
    state_backend = "dynamodb"
    desired_count = 3
  }

  assert {
    condition = (
      length(aws_dynamodb_table.state) == 1 &&
      aws_dynamodb_table.state[0].billing_mode == "PAY_PER_REQUEST" &&
      aws_dynamodb_table.state[0].hash_key == "pk" && aws_dynamodb_table.state[0].range_key == "sk" &&
      aws_dynamodb_table.state[0].attribute == toset([{ name = "pk", type = "S" }, { name = "sk", type = "S" }]) &&
      one(aws_dynamodb_table.state[0].ttl).attribute_name == "expires_at" && one(aws_dynamodb_table.state[0].ttl).enabled &&
      one(aws_dynamodb_table.state[0].point_in_time_recovery).enabled &&
      one(aws_dynamodb_table.state[0].server_side_encryption).enabled &&
      one(aws_dynamodb_table.state[0].server_side_encryption).kms_key_arn == aws_kms_key.reflex[0].arn
    )
    error_message = "The state table must be on-demand, keyed pk/sk (strings), with TTL on expires_at, point-in-time recovery and the module's key."
  }

  assert {
    condition = length([
      for s in data.aws_iam_policy_document.daemon.statement : s
      if s.sid == "StateTable" && s.effect == "Allow" && length(s.condition) == 0
      && toset(s.actions) == toset(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"])
      && toset(s.resources) == toset([aws_dynamodb_table.state[0].arn])
      ]) == 1 && length([
      for s in data.aws_iam_policy_document.daemon.statement : s if anytrue([for a in s.actions : startswith(a, "dynamodb:")])
    ]) == 1
    error_message = "The daemon may use exactly GetItem, PutItem, UpdateItem, DeleteItem, ConditionCheckItem and Query, on the state table only."
  }

  assert {
    condition = (
      { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_STATE_BACKEND == "dynamodb" &&
      { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_STATE_TABLE == aws_dynamodb_table.state[0].name &&
      !contains(keys({ for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }), "REFLEX_STATE_PATH") &&
      jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].mountPoints == [] && length(aws_ecs_task_definition.daemon.volume) == 0
    )
    error_message = "With dynamodb the task must be pointed at the table, with no local state volume."
  }

  assert {
    condition     = aws_ecs_service.daemon.desired_count == 3 && aws_ecs_service.daemon.deployment_minimum_healthy_percent == 100 && aws_ecs_service.daemon.deployment_maximum_percent == 200
    error_message = "Replicas sharing DynamoDB state may roll without downtime."
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.not_running) == 1
    error_message = "A running service has its heartbeat alarm."
  }
}

run "longer_actions" {
  variables {
    longest_action_seconds = 300
  }

  assert {
    condition = (
      aws_sqs_queue.main.visibility_timeout_seconds == 630 &&
      { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_VISIBILITY_TIMEOUT == "630s" &&
      { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_HEARTBEAT == "210s" &&
      { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_SHUTDOWN_GRACE == "115s" &&
      jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].stopTimeout == 120
    )
    error_message = "The timing must follow longest_action_seconds, with the stop timeout capped at Fargate's 120 s and the grace 5 s inside it."
  }
}

run "second_region" {
  override_data {
    target = data.aws_region.current
    values = { id = "us-west-2", name = "us-west-2" }
  }
  variables {
    operator_topic_arn = "arn:aws:sns:us-west-2:123456789012:oncall"
  }

  assert {
    condition     = aws_iam_role.daemon.name == "reflex-us-west-2-daemon" && aws_iam_role.execution.name == "reflex-us-west-2-execution"
    error_message = "A stack in a second region must get role names of its own."
  }
}

run "china_partition" {
  override_data {
    target = data.aws_partition.current
    values = { partition = "aws-cn", dns_suffix = "amazonaws.com.cn" }
  }
  override_data {
    target = data.aws_region.current
    values = { id = "cn-north-1", name = "cn-north-1" }
  }
  variables {
    operator_topic_arn              = "arn:aws-cn:sns:cn-north-1:123456789012:oncall"
    notification_topic_kms_key_arns = ["arn:aws-cn:kms:cn-north-1:123456789012:key/0b6a8c1e-1111-2222-3333-444455556666"]
  }

  assert {
    condition = toset(one([
      for s in data.aws_iam_policy_document.daemon.statement : s.resources if s.sid == "RemediateTaggedInstances"
    ])) == toset(["arn:aws-cn:ec2:cn-north-1:123456789012:instance/*"])
    error_message = "ARNs must use the partition from aws_partition."
  }

  assert {
    condition     = toset(one(one(data.aws_iam_policy_document.daemon_kms[0].statement).condition).values) == toset(["sns.cn-north-1.amazonaws.com.cn"])
    error_message = "kms:ViaService must use the partition's DNS suffix."
  }

  assert {
    condition = one(one([
      for s in data.aws_iam_policy_document.kms[0].statement : s.principals if s.sid == "CloudWatchLogsEncryptDaemonLogGroup"
    ])).identifiers == toset(["logs.cn-north-1.amazonaws.com.cn"])
    error_message = "CloudWatch Logs' principal takes the partition's DNS suffix in aws-cn."
  }
}

run "org_guardrails" {
  variables {
    iam_role_name_prefix     = "team-reflex"
    iam_role_path            = "/workloads/"
    permissions_boundary_arn = "arn:aws:iam::123456789012:policy/boundary"
  }

  assert {
    condition = alltrue([
      for r in [aws_iam_role.daemon, aws_iam_role.execution] :
      r.path == "/workloads/" && r.permissions_boundary == "arn:aws:iam::123456789012:policy/boundary"
    ]) && aws_iam_role.daemon.name == "team-reflex-daemon" && aws_iam_role.execution.name == "team-reflex-execution"
    error_message = "Both roles must take the path, the permissions boundary and the name prefix."
  }
}

run "prefix_lists_only" {
  variables {
    egress_cidr_blocks     = []
    egress_prefix_list_ids = ["pl-0123456789abcdef0"]
  }

  assert {
    condition     = length(aws_security_group.daemon.egress) == 1 && toset(one(aws_security_group.daemon.egress).prefix_list_ids) == toset(["pl-0123456789abcdef0"]) && length(coalesce(one(aws_security_group.daemon.egress).cidr_blocks, [])) == 0
    error_message = "With prefix lists only, egress must go to those prefix lists and no CIDR."
  }
}

run "rejects_operator_topic_in_another_region" {
  command = plan
  variables {
    operator_topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
  }
  expect_failures = [aws_cloudwatch_event_target.task_stopped]
}

run "rejects_no_egress" {
  command = plan
  variables {
    egress_cidr_blocks = []
  }
  expect_failures = [aws_security_group.daemon]
}

run "operator_topic_customer_key" {
  variables {
    operator_topic_kms_key = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = length(aws_iam_role_policy.daemon_kms) == 1 && toset(one(data.aws_iam_policy_document.daemon_kms[0].statement).resources) == toset([var.operator_topic_kms_key])
    error_message = "The daemon must be able to publish to the operator topic through its key."
  }
}

run "operator_topic_aws_managed_key_warns" {
  variables {
    operator_topic_kms_key = "alias/aws/sns"
  }

  expect_failures = [check.operator_topic_key_lets_cloudwatch_publish]

  assert {
    condition     = length(aws_iam_role_policy.daemon_kms) == 0
    error_message = "An AWS-managed key needs no key policy for the daemon."
  }
}

run "redrive_role_exempted_in_the_same_deny" {
  variables {
    redrive_role_arns = ["arn:aws:iam::123456789012:role/reflex-operators"]
  }

  assert {
    condition = length([
      for s in data.aws_iam_policy_document.main_queue.statement : s
      if s.effect == "Deny" && toset(s.actions) == toset(["sqs:SendMessage"]) && toset([for c in s.condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset(["ArnNotEquals aws:SourceArn ${aws_sns_topic.alarm.arn}", "ArnNotLike aws:PrincipalArn arn:aws:iam::123456789012:role/reflex-operators"])
    ]) == 1
    error_message = "The redrive role must be exempted by aws:PrincipalArn in the same Deny statement as the source check."
  }
}

run "operator_topic_is_not_the_alarm_topic" {
  command = plan
  variables {
    operator_topic_arn = "arn:aws:sns:eu-west-1:123456789012:reflex" # the alarm topic, see the override above
  }

  expect_failures = [aws_cloudwatch_metric_alarm.dead_letters]
}

run "rejects_two_daemons" {
  command = plan
  variables {
    desired_count = 2 # with the default local state store
  }
  expect_failures = [aws_ecs_service.daemon]
}

run "rejects_fractional_count" {
  command = plan
  variables {
    desired_count = 1.5
  }
  expect_failures = [var.desired_count]
}

run "rejects_unknown_state_backend" {
  command = plan
  variables {
    state_backend = "redis"
  }
  expect_failures = [var.state_backend]
}

run "rejects_latest" {
  command = plan
  variables {
    image_tag = "latest"
  }
  expect_failures = [var.image_tag]
}

run "rejects_reserved_tag_key" {
  command = plan
  variables {
    managed_tag_key = "aws:autoscaling:groupName"
  }
  expect_failures = [var.managed_tag_key]
}

run "requires_reflex_namespace" {
  command = plan
  variables {
    metric_namespaces = ["custom"]
  }
  expect_failures = [var.metric_namespaces]
}

run "rejects_visibility_beyond_12_hours" {
  command = plan
  variables {
    longest_action_seconds = 21586
  }
  expect_failures = [var.longest_action_seconds]
}

run "rejects_unknown_key_form" {
  command = plan
  variables {
    kms_key = "alias/my-key"
  }
  expect_failures = [var.kms_key]
}

# --- rules from S3 (rules_dir) -----------------------------------------------

run "rules_from_s3" {
  variables {
    rules_dir = "tests/rules"
  }

  assert {
    condition = (
      length(aws_s3_bucket.rules) == 1 && startswith(aws_s3_bucket.rules[0].bucket_prefix, "reflex-rules-") &&
      !aws_s3_bucket.rules[0].force_destroy &&
      one(aws_s3_bucket_versioning.rules[0].versioning_configuration).status == "Enabled" &&
      one(aws_s3_bucket_ownership_controls.rules[0].rule).object_ownership == "BucketOwnerEnforced"
    )
    error_message = "The rules bucket must be versioned, without ACLs, and kept on destroy by default."
  }

  assert {
    condition = (
      aws_s3_bucket_public_access_block.rules[0].block_public_acls &&
      aws_s3_bucket_public_access_block.rules[0].block_public_policy &&
      aws_s3_bucket_public_access_block.rules[0].ignore_public_acls &&
      aws_s3_bucket_public_access_block.rules[0].restrict_public_buckets
    )
    error_message = "Public access to the rules bucket must be blocked, all four ways."
  }

  assert {
    condition = (
      one(one(aws_s3_bucket_server_side_encryption_configuration.rules[0].rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms" &&
      one(one(aws_s3_bucket_server_side_encryption_configuration.rules[0].rule).apply_server_side_encryption_by_default).kms_master_key_id == aws_kms_key.reflex[0].arn &&
      one(aws_s3_bucket_server_side_encryption_configuration.rules[0].rule).bucket_key_enabled
    )
    error_message = "The rules bucket must be encrypted with the module's key, with a bucket key."
  }

  assert {
    condition = length([
      for s in data.aws_iam_policy_document.rules_bucket[0].statement : s
      if s.effect == "Deny" && toset(s.actions) == toset(["s3:*"]) && one(s.principals).identifiers == toset(["*"])
      && toset(s.resources) == toset([aws_s3_bucket.rules[0].arn, "${aws_s3_bucket.rules[0].arn}/*"])
      && toset([for c in s.condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset(["Bool aws:SecureTransport false"])
    ]) == 1 && aws_s3_bucket_policy.rules[0].bucket == aws_s3_bucket.rules[0].id
    error_message = "The rules bucket must refuse every request without TLS, on the bucket and its objects."
  }

  assert {
    condition = (
      one(aws_s3_bucket_lifecycle_configuration.rules[0].rule).status == "Enabled" &&
      one(one(aws_s3_bucket_lifecycle_configuration.rules[0].rule).noncurrent_version_expiration).noncurrent_days == 90
    )
    error_message = "Replaced rule files must expire after 90 days."
  }

  # Every *.toml, subdirectories included, and nothing else (README.md).
  assert {
    condition     = toset([for o in aws_s3_object.rule : o.key]) == toset(["rules/web.toml", "rules/team-db/db.toml"])
    error_message = "Every *.toml under rules_dir, and only those, must be uploaded under rules/, keeping subdirectories."
  }

  assert {
    condition = alltrue([
      for f, o in aws_s3_object.rule :
      o.bucket == aws_s3_bucket.rules[0].id && o.source == "tests/rules/${f}" &&
      o.source_hash == filesha256("tests/rules/${f}") && o.etag != filemd5("tests/rules/${f}") &&
      o.server_side_encryption == "aws:kms" && o.kms_key_id == aws_kms_key.reflex[0].arn
    ])
    error_message = "Each rule file must be uploaded from rules_dir with a content hash (source_hash, not etag: SSE-KMS ETags are not MD5s) and the module's key."
  }

  assert {
    condition = toset([
      for s in data.aws_iam_policy_document.daemon.statement :
      "${s.sid} ${s.effect} ${join(",", s.actions)} ${join(",", s.resources)} ${join(";", [for c in s.condition : "${c.test} ${c.variable} ${join(",", c.values)}"])}"
      if anytrue([for a in s.actions : startswith(a, "s3:")])
      ]) == toset([
      "ListRuleFiles Allow s3:ListBucket ${aws_s3_bucket.rules[0].arn} StringLike s3:prefix rules/*",
      "ReadRuleFiles Allow s3:GetObject ${aws_s3_bucket.rules[0].arn}/rules/* ",
    ])
    error_message = "The daemon may list the rules prefix and read the objects under it, in the rules bucket, and no other S3 action."
  }

  assert {
    condition = (
      length(aws_iam_role_policy.daemon_rules_kms) == 1 &&
      aws_iam_role_policy.daemon_rules_kms[0].role == aws_iam_role.daemon.id &&
      one(data.aws_iam_policy_document.daemon_rules_kms[0].statement).actions == toset(["kms:Decrypt"]) &&
      toset(one(data.aws_iam_policy_document.daemon_rules_kms[0].statement).resources) == toset([aws_kms_key.reflex[0].arn]) &&
      toset([for c in one(data.aws_iam_policy_document.daemon_rules_kms[0].statement).condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset([
        "StringEquals kms:ViaService s3.eu-west-1.amazonaws.com",
        "StringLike kms:EncryptionContext:aws:s3:arn ${aws_s3_bucket.rules[0].arn},${aws_s3_bucket.rules[0].arn}/rules/*",
      ])
    )
    error_message = "The daemon may decrypt with the bucket's key only through S3 and only for the rules bucket."
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value
      if startswith(e.name, "REFLEX_RULES_") || e.name == "REFLEX_STATE_PATH"
      } == {
      REFLEX_RULES_SOURCE             = "s3://${aws_s3_bucket.rules[0].id}/rules/"
      REFLEX_RULES_CACHE              = "/var/lib/reflex/rules-cache.json"
      REFLEX_RULES_REJECTED_TOPIC_ARN = var.operator_topic_arn
      REFLEX_STATE_PATH               = "/var/lib/reflex/state.db"
    }
    error_message = "The task must read the rules from the bucket's prefix, cache them on its volume, and report rejected sets to the operator topic."
  }

  assert {
    condition = (
      jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].mountPoints == [{ sourceVolume = "state", containerPath = "/var/lib/reflex", readOnly = false }] &&
      jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].readonlyRootFilesystem
    )
    error_message = "The rules cache must be on the writable task volume; the root filesystem stays read-only."
  }

  assert {
    condition     = output.rules_source == "s3://${aws_s3_bucket.rules[0].id}/rules/" && output.rules_bucket_name == aws_s3_bucket.rules[0].id
    error_message = "The outputs must name the bucket and the rules source."
  }
}

# Rule files removed from rules_dir leave the for_each, so apply deletes
# their objects: this run follows rules_from_s3 in the same state.
run "rules_from_s3_removed_files_are_deleted" {
  variables {
    rules_dir = "examples/elb-unhealthy-host/rules"
  }

  assert {
    condition     = toset(keys(aws_s3_object.rule)) == toset(["elb-terminate-out-of-service.toml"]) && toset([for o in aws_s3_object.rule : o.key]) == toset(["rules/elb-terminate-out-of-service.toml"])
    error_message = "Only the files now in rules_dir may have objects; the earlier ones must be deleted."
  }
}

# With the DynamoDB store there is no state file, but the rules cache still
# needs the task volume.
run "rules_from_s3_with_dynamodb_state" {
  variables {
    rules_dir     = "tests/rules"
    state_backend = "dynamodb"
    desired_count = 2
  }

  assert {
    condition = (
      one(aws_ecs_task_definition.daemon.volume).name == "state" &&
      jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].mountPoints == [{ sourceVolume = "state", containerPath = "/var/lib/reflex", readOnly = false }] &&
      { for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }.REFLEX_RULES_CACHE == "/var/lib/reflex/rules-cache.json" &&
      !contains(keys({ for e in jsondecode(aws_ecs_task_definition.daemon.container_definitions)[0].environment : e.name => e.value }), "REFLEX_STATE_PATH")
    )
    error_message = "With the DynamoDB store the task volume must remain for the rules cache, without a local state path."
  }
}

run "rules_from_s3_own_key" {
  variables {
    rules_dir = "tests/rules"
    kms_key   = "arn:aws:kms:eu-west-1:123456789012:key/0b6a8c1e-1111-2222-3333-444455556666"
  }

  assert {
    condition = (
      one(one(aws_s3_bucket_server_side_encryption_configuration.rules[0].rule).apply_server_side_encryption_by_default).kms_master_key_id == var.kms_key &&
      alltrue([for o in aws_s3_object.rule : o.kms_key_id == var.kms_key]) &&
      toset(one(data.aws_iam_policy_document.daemon_rules_kms[0].statement).resources) == toset([var.kms_key])
    )
    error_message = "A given key must encrypt the rules, and be the key the daemon may decrypt with."
  }
}

# The AWS-managed S3 key needs no grant: S3 uses it for any principal of the
# account that may read the object.
run "rules_from_s3_aws_managed_key" {
  variables {
    rules_dir = "tests/rules"
    kms_key   = "alias/aws/sns"
  }

  expect_failures = [check.alarm_topic_key_lets_cloudwatch_publish]

  assert {
    condition = (
      one(one(aws_s3_bucket_server_side_encryption_configuration.rules[0].rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms" &&
      one(one(aws_s3_bucket_server_side_encryption_configuration.rules[0].rule).apply_server_side_encryption_by_default).kms_master_key_id == null &&
      length(aws_iam_role_policy.daemon_rules_kms) == 0
    )
    error_message = "Without a customer-managed key the bucket must use S3's AWS-managed key, and the daemon gets no key permission."
  }
}

run "rejects_rules_dir_without_rule_files" {
  command = plan
  variables {
    rules_dir = "no-such-directory" # a typo: no rule file there
  }
  expect_failures = [var.rules_dir]
}
