# The state shared by replicas (state_backend = "dynamodb"): dedup claims,
# cooldowns, rate buckets and target leases, one item each, under a
# partition key `pk` and a sort key `sk` (the item layout is in the
# repository README). Created only for the dynamodb backend.
#
# expires_at is a TTL attribute: it only garbage-collects items long past
# use. Correctness never depends on it (DynamoDB deletes expired items up to
# days late); the daemon compares lease and cooldown times itself.

resource "aws_dynamodb_table" "state" {
  count = local.state_dynamodb ? 1 : 0

  name         = "${var.name}-state"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  # The claims are the record of what reflex did and is doing; a bad
  # deploy or a mistaken `reflex state forget-cooldown` can be undone.
  point_in_time_recovery {
    enabled = true
  }

  # The module's key (kms_key). With kms_key = "alias/aws/sns" there is no
  # customer-managed key, and the table uses DynamoDB's AWS-managed key.
  server_side_encryption {
    enabled     = true
    kms_key_arn = local.customer_kms_key_arn
  }

  tags = var.tags
}
