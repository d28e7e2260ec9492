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
  # Only this account's CloudWatch alarms may publish. Principals of the
  # account can still publish through their own IAM policies (for a test
  # message, say); reflex trusts only this topic's ARN either way.
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
      values   = ["arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:*"]
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
  # TopicArn against its trusted topics; this makes the queue agree.
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

resource "aws_sns_topic_subscription" "main" {
  topic_arn = aws_sns_topic.alarm.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.main.arn
  # The daemon decodes the SNS envelope (it checks TopicArn), so keep it.
  raw_message_delivery = false
}
