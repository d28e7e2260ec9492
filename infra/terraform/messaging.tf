# Alarm topic → main queue → (after max_receive_count receives) dead-letter queue.

resource "aws_sns_topic" "alarm" {
  name              = var.name
  display_name      = "reflex alarms"
  kms_master_key_id = local.topic_kms_key_id
  tags              = var.tags
}

resource "aws_sns_topic_policy" "alarm" {
  arn    = aws_sns_topic.alarm.arn
  policy = data.aws_iam_policy_document.alarm_topic.json
}

data "aws_iam_policy_document" "alarm_topic" {
  # Only this account's CloudWatch alarms may publish.
  statement {
    sid       = "CloudWatchAlarmsOfThisAccountPublish"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarm.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.cloudwatch_alarm_arns]
    }
  }

  # In one account a request is allowed when either the identity policy or
  # the resource policy allows it, so the Allow above keeps nobody out: an
  # admin or CI role with sns:* could publish a made-up alarm. This Deny
  # wins over any Allow. A direct caller has no aws:SourceArn, and a missing
  # key makes the negated condition true, so every publish that is not a
  # CloudWatch alarm of this account and region is refused. To test the
  # path, set an alarm's state (aws cloudwatch set-alarm-state), not
  # aws sns publish.
  statement {
    sid       = "DenyPublishExceptThisAccountsAlarms"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarm.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotLike"
      variable = "aws:SourceArn"
      values   = [local.cloudwatch_alarm_arns]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarm.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue" "dead_letter" {
  name = "${var.name}-dlq"
  # The longest SQS allows. A message's age counts from its first enqueue on
  # the main queue, so this leaves 14 days minus the main queue's retention
  # to look at a dead letter and redrive it.
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue" "main" {
  name                       = var.name
  visibility_timeout_seconds = local.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20 # long polling
  # SSE-SQS rather than KMS: SNS can deliver to it without a key grant, and
  # the daemon needs no kms:Decrypt to receive.
  sqs_managed_sse_enabled = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# A separate resource because the dead-letter queue must exist before the main
# queue (its redrive policy names it), and this policy names the main queue.
resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}

resource "aws_sqs_queue_policy" "main" {
  queue_url = aws_sqs_queue.main.id
  policy    = data.aws_iam_policy_document.main_queue.json
}

data "aws_iam_policy_document" "main_queue" {
  # Only the alarm topic may send. The daemon also checks the envelope's
  # TopicArn and signature; this makes the queue agree.
  statement {
    sid       = "AlarmTopicSends"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main.arn]

    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.alarm.arn]
    }
  }

  # The Allow above keeps nobody out: identity policies in the account (admin
  # roles, CI roles with sqs:*) could still write a made-up alarm to the
  # queue. This Deny refuses every SendMessage that does not come from the
  # alarm topic; a direct caller has no aws:SourceArn, and a missing key
  # makes ArnNotEquals true. The operators' redrive roles are exempted in
  # the same statement (conditions are ANDed: denied only when neither the
  # source nor the principal is allowed).
  statement {
    sid       = "DenySendExceptAlarmTopic"
    effect    = "Deny"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.alarm.arn]
    }

    dynamic "condition" {
      for_each = length(var.redrive_role_arns) > 0 ? [1] : []

      content {
        test     = "ArnNotLike"
        variable = "aws:PrincipalArn"
        values   = var.redrive_role_arns
      }
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.main.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  policy    = data.aws_iam_policy_document.dead_letter_queue.json
}

data "aws_iam_policy_document" "dead_letter_queue" {
  # Only reflex dead-letters, and SQS moves messages here after
  # max_receive_count receives (a redrive, sourced from the main queue).
  # Anything else written here could later be redriven to the main queue and
  # acted on, so nobody else may send, whatever their IAM policies allow.
  statement {
    sid       = "DenySendExceptReflexAndRedrive"
    effect    = "Deny"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = [aws_iam_role.daemon.arn]
    }

    condition {
      test     = "ArnNotEquals"
      variable = "aws:SourceArn"
      values   = [aws_sqs_queue.main.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.dead_letter.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sns_topic_subscription" "main" {
  topic_arn = aws_sns_topic.alarm.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.main.arn
  # The daemon decodes the SNS envelope (it checks TopicArn), so keep it.
  raw_message_delivery = false
}
