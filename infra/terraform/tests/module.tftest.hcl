# `terraform test` for the module, offline: the AWS provider is mocked (its
# schema comes from the local provider mirror, see scripts/check-terraform),
# so every expression is evaluated with real inputs but nothing is created.
# Run from infra/terraform: terraform init -backend=false && terraform test

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
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
    }
    error_message = "The container must get exactly the queue URLs, the trusted topic and the region."
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
    condition     = aws_cloudwatch_metric_alarm.not_running.treat_missing_data == "breaching" && aws_cloudwatch_metric_alarm.not_running.dimensions.Queue == aws_sqs_queue.main.name && aws_cloudwatch_metric_alarm.not_running.actions_enabled
    error_message = "The not-running alarm must watch this queue's heartbeat and treat silence as breaching."
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

  assert {
    condition     = !aws_cloudwatch_metric_alarm.not_running.actions_enabled
    error_message = "A paused daemon must not page."
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
    desired_count = 2
  }
  expect_failures = [var.desired_count]
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
