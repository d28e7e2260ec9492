# IAM for reflex: the daemon's role (the ECS task role) and the ECS execution
# role that pulls the image and ships logs.
#
# data.aws_iam_policy_document.daemon is the contract with the code: its
# statements, as (effect, action, resource, condition) tuples, must equal
# those `reflex iam-policy --all-actions` prints for the same inputs
# (--partition, --region, --account, queue URLs, tag, load balancers, topics,
# namespaces, state table, rules source). tests/terraform.rs fails when the
# two drift apart. Key use (daemon_kms here, daemon_rules_kms in rules.tf) is
# in separate policies, which the generator does not print.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    sid     = "EcsTasksOfThisAccount"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Confused-deputy guard: only ECS acting for this account.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "daemon" {
  name                 = "${local.iam_name_prefix}-daemon"
  path                 = var.iam_role_path
  permissions_boundary = var.permissions_boundary_arn
  description          = "reflex daemon: drains ${var.name} in ${local.region} and remediates tagged instances."
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "daemon" {
  name   = "reflex-daemon"
  role   = aws_iam_role.daemon.id
  policy = data.aws_iam_policy_document.daemon.json
}

data "aws_iam_policy_document" "daemon" {
  # DescribeAlarms on "*" lives in its own document so that its checkov skip
  # covers that one statement only; it is merged in here.
  source_policy_documents = [data.aws_iam_policy_document.read_alarms.json]

  statement {
    sid    = "DrainAlarmQueue"
    effect = "Allow"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  statement {
    sid       = "DeadLetterPoisonMessages"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  # PutMetricData has no resource type; the namespace condition is the scope.
  statement {
    sid       = "PutOwnMetrics"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = var.metric_namespaces
    }
  }

  # Load-balancer permissions exist only when reflex manages load balancers.
  dynamic "statement" {
    for_each = length(var.load_balancer_names) > 0 ? [1] : []

    content {
      # DescribeInstanceHealth has no resource type: "*" is the narrowest.
      sid       = "ReadInstanceHealth"
      effect    = "Allow"
      actions   = ["elasticloadbalancing:DescribeInstanceHealth"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = length(var.load_balancer_names) > 0 ? [1] : []

    content {
      sid       = "DeregisterFromManagedLoadBalancers"
      effect    = "Allow"
      actions   = ["elasticloadbalancing:DeregisterInstancesFromLoadBalancer"]
      resources = local.load_balancer_arns
    }
  }

  # Target-group permissions exist only when reflex manages target groups.
  dynamic "statement" {
    for_each = length(var.target_group_arns) > 0 ? [1] : []

    content {
      # Neither read has a resource type: "*" is the narrowest.
      sid    = "ReadTargetHealth"
      effect = "Allow"
      actions = [
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
      ]
      resources = ["*"]
    }
  }

  # Deregistration on the listed target groups, and only while they carry
  # the managed tag.
  dynamic "statement" {
    for_each = length(var.target_group_arns) > 0 ? [1] : []

    content {
      sid       = "DeregisterFromTaggedTargetGroups"
      effect    = "Allow"
      actions   = ["elasticloadbalancing:DeregisterTargets"]
      resources = var.target_group_arns

      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/${var.managed_tag_key}"
        values   = [var.managed_tag_value]
      }
    }
  }

  # Auto Scaling permissions exist only when reflex acts through groups.
  dynamic "statement" {
    for_each = length(var.auto_scaling_group_names) > 0 ? [1] : []

    content {
      # Neither read has a resource type: "*" is the narrowest.
      sid    = "ReadAutoScalingGroups"
      effect = "Allow"
      actions = [
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingGroups",
      ]
      resources = ["*"]
    }
  }

  # Marking an instance Unhealthy or terminating it through its group, on
  # the listed groups and only while they carry the managed tag. (The
  # group's service-linked role terminates the instance, so the EC2 tag
  # condition below does not reach this path; the group's tag does.)
  dynamic "statement" {
    for_each = length(var.auto_scaling_group_names) > 0 ? [1] : []

    content {
      sid    = "ReplaceThroughTaggedAutoScalingGroups"
      effect = "Allow"
      actions = [
        "autoscaling:SetInstanceHealth",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
      ]
      resources = local.auto_scaling_group_arns

      condition {
        test     = "StringEquals"
        variable = "autoscaling:ResourceTag/${var.managed_tag_key}"
        values   = [var.managed_tag_value]
      }
    }
  }

  # run_command (SSM Run Command): which instances SSM manages and each
  # invocation's status have no resource type, so "*".
  statement {
    sid    = "ReadCommandStatus"
    effect = "Allow"
    actions = [
      "ssm:DescribeInstanceInformation",
      "ssm:GetCommandInvocation",
    ]
    resources = ["*"]
  }

  # SendCommand on instances carrying the managed tag...
  statement {
    sid       = "RunCommandOnTaggedInstances"
    effect    = "Allow"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/${var.managed_tag_key}"
      values   = [var.managed_tag_value]
    }
  }

  # ...with the one document reflex runs (AWS-owned: no account in its ARN).
  statement {
    sid       = "RunShellScriptDocument"
    effect    = "Allow"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ssm:${local.region}::document/AWS-RunShellScript"]
  }

  # DescribeInstances has no resource type; pin it to this region.
  statement {
    sid       = "DescribeInstances"
    effect    = "Allow"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:Region"
      values   = [local.region]
    }
  }

  # The destructive actions, on tagged instances only: a wrong rule cannot
  # reach an instance nobody opted in.
  statement {
    sid    = "RemediateTaggedInstances"
    effect = "Allow"
    actions = [
      "ec2:TerminateInstances",
      "ec2:RebootInstances",
      "ec2:StopInstances",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/${var.managed_tag_key}"
      values   = [var.managed_tag_value]
    }
  }

  # Belt and braces: an explicit deny wins over any Allow, so even a broader
  # policy attached to this role later cannot reach an untagged instance.
  # StringNotEquals is true when the tag is missing.
  statement {
    sid    = "DenyUntaggedInstances"
    effect = "Deny"
    actions = [
      "ec2:TerminateInstances",
      "ec2:RebootInstances",
      "ec2:StopInstances",
    ]
    resources = ["*"]

    condition {
      test     = "StringNotEquals"
      variable = "ec2:ResourceTag/${var.managed_tag_key}"
      values   = [var.managed_tag_value]
    }
  }

  statement {
    sid       = "NotifyOperators"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = local.notification_topic_arns
  }

  # The rules from S3 (rules_dir set): listing the rule files' prefix and
  # reading them, in the rules bucket only. `reflex iam-policy
  # --rules-source s3://BUCKET/PREFIX/` prints the same two statements.
  dynamic "statement" {
    for_each = local.rules_from_s3 ? [1] : []

    content {
      sid       = "ListRuleFiles"
      effect    = "Allow"
      actions   = ["s3:ListBucket"]
      resources = [aws_s3_bucket.rules[0].arn]

      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${local.rules_prefix}*"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.rules_from_s3 ? [1] : []

    content {
      sid       = "ReadRuleFiles"
      effect    = "Allow"
      actions   = ["s3:GetObject"]
      resources = ["${aws_s3_bucket.rules[0].arn}/${local.rules_prefix}*"]
    }
  }

  # The shared state table (state_backend = "dynamodb"): the item operations
  # the store makes, on that table only. TransactWriteItems is authorized by
  # the per-item actions it contains (PutItem, UpdateItem, DeleteItem,
  # ConditionCheckItem); Query serves `reflex state`.
  dynamic "statement" {
    for_each = local.state_dynamodb ? [1] : []

    content {
      sid    = "StateTable"
      effect = "Allow"
      actions = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
      ]
      resources = [aws_dynamodb_table.state[0].arn]
    }
  }
}

# The re-check before every remediation asks DescribeAlarms for both metric
# and composite alarms (AlarmTypes = [MetricAlarm, CompositeAlarm]). AWS
# documents that composite-alarm data needs DescribeAlarms on "*"; scoped to
# alarm ARNs, the call can be denied and the headline rule would never act
# (AWS CDK moved to "*" for the same reason, aws/aws-cdk#29171). It is
# read-only.
data "aws_iam_policy_document" "read_alarms" {
  #checkov:skip=CKV_AWS_356:DescribeAlarms with composite alarms needs Resource "*" (AWS CloudWatch docs); read-only.
  statement {
    sid       = "ReadAlarmState"
    effect    = "Allow"
    actions   = ["cloudwatch:DescribeAlarms"]
    resources = ["*"]
  }
}

# Publishing to a KMS-encrypted notification topic needs the topic key. Kept
# apart from the daemon policy: it grants no API action of its own, only key
# use, and only when SNS makes the call.
resource "aws_iam_role_policy" "daemon_kms" {
  count = length(local.notification_topic_kms_key_arns) > 0 ? 1 : 0

  name   = "reflex-daemon-notification-keys"
  role   = aws_iam_role.daemon.id
  policy = data.aws_iam_policy_document.daemon_kms[0].json
}

data "aws_iam_policy_document" "daemon_kms" {
  count = length(local.notification_topic_kms_key_arns) > 0 ? 1 : 0

  statement {
    sid       = "EncryptNotificationsThroughSns"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = local.notification_topic_kms_key_arns

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sns.${local.region}.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name                 = "${local.iam_name_prefix}-execution"
  path                 = var.iam_role_path
  permissions_boundary = var.permissions_boundary_arn
  description          = "ECS execution role for ${var.name} in ${local.region}: pulls the image and writes logs."
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "reflex-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# Scoped replacement for AmazonECSTaskExecutionRolePolicy, which grants these
# actions on every repository and log group.
data "aws_iam_policy_document" "execution" {
  # GetAuthorizationToken has no resource type.
  statement {
    sid       = "EcrLogin"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid    = "PullReflexImage"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.reflex.arn]
  }

  statement {
    sid       = "WriteDaemonLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.daemon.arn}:log-stream:*"]
  }
}
