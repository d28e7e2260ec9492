# The customer-managed key for the alarm topic, the log group and the state
# table, created when var.kms_key is "create" (the default).
#
# A customer-managed key is the default because CloudWatch alarms can only
# publish to an encrypted topic whose key policy grants them
# kms:GenerateDataKey* and kms:Decrypt, and the AWS-managed SNS key's policy
# cannot be changed.

resource "aws_kms_key" "reflex" {
  count = local.create_kms_key ? 1 : 0

  description             = "${var.name}: alarm topic, daemon log group and state table"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms[0].json
  tags                    = var.tags
}

resource "aws_kms_alias" "reflex" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.reflex[0].key_id
}

data "aws_iam_policy_document" "kms" {
  # This document is a key policy, not an identity policy: Resource "*" in a
  # key policy means "this key", and the principals are named. The checks
  # below assume an identity policy, where "*" would mean every resource.
  #checkov:skip=CKV_AWS_109:Key policy; Resource "*" is this key only, granted to the account root (IAM decides) and to two named service principals.
  #checkov:skip=CKV_AWS_111:Key policy; Resource "*" is this key only, and every statement names its principal.
  #checkov:skip=CKV_AWS_356:Key policy; Resource "*" is the only valid resource in a key policy and means this key.
  count = local.create_kms_key ? 1 : 0

  # Without this the key is unmanageable: IAM policies in the account decide
  # who administers and uses the key, as for any key created by default.
  statement {
    sid       = "AccountAdministersKeyThroughIam"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch publishes alarm notifications to the encrypted topic: only
  # for this account's alarms in this region, and only to encrypt for this
  # topic (the confused-deputy conditions of the SNS encryption docs).
  statement {
    sid       = "CloudWatchAlarmsPublishToTopic"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

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

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:sns:topicArn"
      values   = [local.alarm_topic_arn]
    }
  }

  # CloudWatch Logs encrypts the daemon's log group, and only that group.
  statement {
    sid    = "CloudWatchLogsEncryptDaemonLogGroup"
    effect = "Allow"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = [local.logs_principal]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = [local.log_group_arn]
    }
  }
}
