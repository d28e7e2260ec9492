# The rules from S3 (var.rules_dir set): a bucket holding the rule files of
# a local directory, which every task polls (REFLEX_RULES_SOURCE, ecs.tf).
# A rule edit followed by `terraform apply` uploads the changed file, and
# every replica loads the new set within one poll interval (30 s by
# default), with no image build. reflex validates the whole set before it
# replaces the live one: an invalid upload leaves the previous set running,
# and is published to the operator topic (REFLEX_RULES_REJECTED_TOPIC_ARN).
#
# With var.rules_dir = null (the default) nothing here is created, and the
# task runs the rules baked into its image, as before.

resource "aws_s3_bucket" "rules" {
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: every task polls the prefix (ListObjectsV2) on its own interval.
  #checkov:skip=CKV_AWS_144:The objects are copies of rules_dir, which is under version control; terraform apply rebuilds them anywhere, and a copy in another region would serve no task.
  #checkov:skip=CKV_AWS_18:Only terraform apply writes here (each write a new object version, the change itself in the VCS history of rules_dir) and only the daemon role reads; record access account-wide with CloudTrail S3 data events rather than a second bucket per stack.
  count = local.rules_from_s3 ? 1 : 0

  # Bucket names are global: a prefix, and S3 appends a unique suffix. S3
  # allows at most 37 characters of prefix.
  bucket_prefix = "${substr(var.name, 0, 30)}-rules-"
  # A versioned bucket keeps every earlier version of every rule file, so
  # `terraform destroy` fails on it unless this is set.
  force_destroy = var.rules_bucket_force_destroy
  tags          = var.tags
}

# Every upload is a new version: the rule sets that ran before are kept
# (noncurrent, expired below) for an audit or a look at what changed.
resource "aws_s3_bucket_versioning" "rules" {
  count = local.rules_from_s3 ? 1 : 0

  bucket = aws_s3_bucket.rules[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

# The module's key (var.kms_key), as for the topic, the log group and the
# state table. With kms_key = "alias/aws/sns" there is no customer-managed
# key, and S3 uses its AWS-managed key (aws/s3), which the daemon may use
# through S3 without a key grant. A bucket key keeps KMS calls (and their
# cost) to one per bucket and period instead of one per object read.
resource "aws_s3_bucket_server_side_encryption_configuration" "rules" {
  count = local.rules_from_s3 ? 1 : 0

  bucket = aws_s3_bucket.rules[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.customer_kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "rules" {
  count = local.rules_from_s3 ? 1 : 0

  bucket                  = aws_s3_bucket.rules[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# No ACLs: access is decided by IAM and the bucket policy alone.
resource "aws_s3_bucket_ownership_controls" "rules" {
  count = local.rules_from_s3 ? 1 : 0

  bucket = aws_s3_bucket.rules[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Replaced rule files stay for 90 days, then go; an interrupted upload does
# not linger.
resource "aws_s3_bucket_lifecycle_configuration" "rules" {
  count = local.rules_from_s3 ? 1 : 0

  bucket = aws_s3_bucket.rules[0].id

  rule {
    id     = "expire-replaced-rule-files"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 90
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Lifecycle rules apply to versions, which exist once versioning is on.
  depends_on = [aws_s3_bucket_versioning.rules]
}

resource "aws_s3_bucket_policy" "rules" {
  count = local.rules_from_s3 ? 1 : 0

  bucket = aws_s3_bucket.rules[0].id
  policy = data.aws_iam_policy_document.rules_bucket[0].json

  # S3 refuses a policy while the public access block is being set.
  depends_on = [aws_s3_bucket_public_access_block.rules]
}

data "aws_iam_policy_document" "rules_bucket" {
  count = local.rules_from_s3 ? 1 : 0

  # Rule files decide what reflex does to instances: never over plain HTTP,
  # for any principal, reads and writes alike.
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.rules[0].arn,
      "${aws_s3_bucket.rules[0].arn}/*",
    ]

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

# One object per rule file, under local.rules_prefix. A file removed from
# var.rules_dir drops out of the for_each, so apply deletes its object (S3
# keeps it as a noncurrent version) and the next poll loads the set without
# it.
resource "aws_s3_object" "rule" {
  for_each = local.rules_from_s3 ? fileset(var.rules_dir, "**/*.toml") : toset([])

  bucket       = aws_s3_bucket.rules[0].id
  key          = "${local.rules_prefix}${each.value}"
  source       = "${var.rules_dir}/${each.value}"
  content_type = "application/toml"

  # What makes an edit re-upload. Not `etag = filemd5(...)`: with SSE-KMS
  # the ETag S3 returns is not the MD5 of the content, so an etag argument
  # would differ from the state on every plan and re-upload forever.
  # source_hash is compared with the file only, never with S3.
  source_hash = filesha256("${var.rules_dir}/${each.value}")

  # Spelled out, though the bucket default is the same: an object written
  # with another key would need that key's grant to be read by the daemon.
  server_side_encryption = "aws:kms"
  kms_key_id             = local.customer_kms_key_arn
  bucket_key_enabled     = true

  tags = var.tags

  # Encryption and the policy first: no rule file is ever stored otherwise.
  depends_on = [
    aws_s3_bucket_server_side_encryption_configuration.rules,
    aws_s3_bucket_policy.rules,
  ]
}

# Reading an object encrypted with a customer-managed key needs kms:Decrypt
# on that key. Kept apart from the daemon policy (which `reflex iam-policy`
# must reproduce exactly): it grants no API action, only key use, only when
# S3 makes the call, and only for this bucket's objects (S3 passes the
# bucket's ARN as encryption context with a bucket key, an object's ARN
# without one).
resource "aws_iam_role_policy" "daemon_rules_kms" {
  count = local.rules_from_s3 && local.customer_kms_key_arn != null ? 1 : 0

  name   = "reflex-daemon-rules-key"
  role   = aws_iam_role.daemon.id
  policy = data.aws_iam_policy_document.daemon_rules_kms[0].json
}

data "aws_iam_policy_document" "daemon_rules_kms" {
  count = local.rules_from_s3 && local.customer_kms_key_arn != null ? 1 : 0

  statement {
    sid       = "DecryptRuleFilesThroughS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [local.customer_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values = [
        aws_s3_bucket.rules[0].arn,
        "${aws_s3_bucket.rules[0].arn}/${local.rules_prefix}*",
      ]
    }
  }
}
