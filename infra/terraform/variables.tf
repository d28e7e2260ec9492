variable "name" {
  description = "Name of the stack. Used for the topic, queues, cluster, service, role and repository names. Lower case because ECR repository names must be."
  type        = string
  default     = "reflex"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.name))
    error_message = "name must start with a lower-case letter and contain only a-z, 0-9 and '-', at most 32 characters."
  }
}

variable "image_tag" {
  description = "Tag of the reflex image in the module's ECR repository to run. Tags are immutable (the git commit is a good choice). Without rules_dir the rules are baked into the image, so every rule change is a new image and a new tag; with rules_dir a rule change needs no new image."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid Docker tag (up to 128 of A-Z a-z 0-9 _ . -) and not \"latest\": the repository's tags are immutable."
  }
}

variable "vpc_id" {
  description = "VPC the Fargate task runs in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets for the Fargate task. Private subnets with a NAT gateway, or VPC endpoints for SQS, SNS, CloudWatch, CloudWatch Logs, EC2, ELB, ECR (api and dkr) and S3, so the task reaches AWS APIs without a public IP."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must list at least one subnet ID (subnet-...)."
  }
}

variable "assign_public_ip" {
  description = "Give the task a public IP. Only for public subnets without NAT; the task accepts no inbound traffic either way."
  type        = bool
  default     = false
}

variable "egress_cidr_blocks" {
  description = "Where the task may open HTTPS (443) connections: AWS API endpoints and ECR. Narrow it to your VPC endpoints' CIDRs or the NAT route if you can. May be empty when egress_prefix_list_ids covers every destination."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  nullable    = false

  validation {
    condition     = alltrue([for c in var.egress_cidr_blocks : can(cidrnetmask(c))])
    error_message = "egress_cidr_blocks must contain IPv4 CIDR blocks only."
  }
}

variable "egress_prefix_list_ids" {
  description = "Managed prefix lists the task may open HTTPS (443) connections to, besides egress_cidr_blocks. With VPC endpoints, list the S3 gateway endpoint's prefix list (ECR image layers are pulled from S3) and set egress_cidr_blocks to the interface endpoints' CIDRs."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for p in var.egress_prefix_list_ids : can(regex("^pl-[0-9a-f]{8,17}$", p))])
    error_message = "egress_prefix_list_ids must contain prefix list IDs (pl-...)."
  }
}

variable "operator_topic_arn" {
  description = "SNS topic that receives the alarms on reflex itself (dead letters, stale queue, daemon not running), e.g. the on-call pager. reflex may also publish to it. Must be in the stack's region (alarms and EventBridge rules publish to topics of their own region only), and must not be the module's own alarm topic."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$", var.operator_topic_arn))
    error_message = "operator_topic_arn must be an SNS topic ARN."
  }
}

variable "operator_topic_kms_key" {
  description = <<-EOT
    Key that encrypts operator_topic_arn, if it is encrypted.
    null (default): the operator topic is not encrypted.
    A KMS key ARN: a customer-managed key. Its policy must let cloudwatch.amazonaws.com (the alarms on reflex) and events.amazonaws.com (the task-stopped rule) use kms:GenerateDataKey* and kms:Decrypt (see README); the daemon may use it through SNS to publish.
    "alias/aws/sns": the AWS-managed SNS key. CloudWatch alarms cannot publish to a topic encrypted with it, and a check says so on every plan.
  EOT
  type        = string
  default     = null

  validation {
    condition = (
      var.operator_topic_kms_key == null ||
      var.operator_topic_kms_key == "alias/aws/sns" ||
      can(regex("^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-zA-Z-]+$", var.operator_topic_kms_key))
    )
    error_message = "operator_topic_kms_key must be null, \"alias/aws/sns\", or a KMS key ARN (arn:...:kms:...:key/...)."
  }
}

variable "notification_topic_arns" {
  description = "Further SNS topics the rules' notify actions publish to. sns:Publish is granted on these and on operator_topic_arn, and nothing else."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.notification_topic_arns : can(regex("^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$", t))])
    error_message = "notification_topic_arns must contain SNS topic ARNs only."
  }
}

variable "notification_topic_kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the notification topics (operator_topic_arn and notification_topic_arns). Publishing to an encrypted topic needs kms:GenerateDataKey and kms:Decrypt on its key; the daemon gets them on these keys, only when called through SNS."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for k in var.notification_topic_kms_key_arns : can(regex("^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-zA-Z-]+$", k))])
    error_message = "notification_topic_kms_key_arns must contain KMS key ARNs (arn:...:kms:...:key/...), not aliases."
  }
}

variable "redrive_role_arns" {
  description = "IAM roles that may send to the main queue besides the alarm topic: the operators' role for `reflex dlq redrive`. The queue policy denies sqs:SendMessage to every other principal, whatever its own IAM policies allow. Wildcards are allowed (ArnLike), e.g. for SSO roles."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for r in var.redrive_role_arns : can(regex("^arn:aws[a-zA-Z-]*:iam::[0-9*]{1,12}:role/.+$", r))])
    error_message = "redrive_role_arns must contain IAM role ARNs (arn:...:iam::<account>:role/...)."
  }
}

variable "load_balancer_names" {
  description = "Names of the classic load balancers reflex manages. elasticloadbalancing:DeregisterInstancesFromLoadBalancer is granted on these only. Empty: reflex gets no load-balancer permissions at all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for n in var.load_balancer_names : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$", n))])
    error_message = "load_balancer_names must contain classic load balancer names (1-32 of A-Z a-z 0-9 -, not starting or ending with -)."
  }
}

variable "target_group_arns" {
  description = "ARNs of the ELBv2 (ALB/NLB) target groups reflex manages (remediate_pool with pool = \"target_group\"). Reading target health is granted when this is non-empty, and elasticloadbalancing:DeregisterTargets on these only, while they carry the managed tag. Empty: no target-group permissions at all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.target_group_arns : can(regex("^arn:[a-z-]+:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$", a))])
    error_message = "target_group_arns must contain target group ARNs (arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)."
  }
}

variable "auto_scaling_group_names" {
  description = "Names of the Auto Scaling groups the remediate_pool methods asg_set_unhealthy and asg_terminate may act through. Reading group membership is granted when this is non-empty, and autoscaling:SetInstanceHealth and autoscaling:TerminateInstanceInAutoScalingGroup on these only, while they carry the managed tag. Empty: no Auto Scaling permissions at all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for n in var.auto_scaling_group_names : length(n) > 0 && length(n) <= 255 && !strcontains(n, ":")])
    error_message = "auto_scaling_group_names must contain Auto Scaling group names (1-255 characters, no colon)."
  }
}

variable "managed_tag_key" {
  description = "Tag key that marks an EC2 instance as one reflex may terminate, reboot or stop. IAM denies those actions on any instance without this tag and value, whatever the rules say."
  type        = string
  default     = "reflex:managed"

  validation {
    condition     = length(var.managed_tag_key) > 0 && length(var.managed_tag_key) <= 128 && !startswith(lower(var.managed_tag_key), "aws:")
    error_message = "managed_tag_key must be 1-128 characters and must not start with the reserved prefix aws:."
  }
}

variable "managed_tag_value" {
  description = "Value the managed_tag_key tag must have."
  type        = string
  default     = "true"

  validation {
    condition     = length(var.managed_tag_value) > 0 && length(var.managed_tag_value) <= 256
    error_message = "managed_tag_value must be 1-256 characters; an empty value would match too loosely."
  }
}

variable "metric_namespaces" {
  description = "CloudWatch namespaces reflex may put metrics in: its own (reflex, which carries the Heartbeat the not-running alarm watches) and any a rule chooses."
  type        = list(string)
  default     = ["reflex"]

  validation {
    condition     = contains(var.metric_namespaces, "reflex") && alltrue([for n in var.metric_namespaces : !startswith(n, "AWS/") && length(n) > 0 && length(n) <= 255])
    error_message = "metric_namespaces must include \"reflex\" and must not use the reserved AWS/ prefix."
  }
}

variable "kms_key" {
  description = <<-EOT
    Key that encrypts the alarm topic (and the log group, when it is a customer-managed key).
    "create" (default): the module creates a customer-managed key, with rotation, whose policy lets CloudWatch alarms publish to the topic and CloudWatch Logs encrypt the daemon's log group.
    A KMS key ARN: use that customer-managed key. Its policy must let cloudwatch.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt, and logs.<region>.amazonaws.com encrypt the log group (see README).
    "alias/aws/sns": the AWS-managed SNS key. CloudWatch alarms cannot publish to a topic encrypted with it, and a check says so on every plan. The log group then has CloudWatch Logs' default encryption.
  EOT
  type        = string
  default     = "create"
  nullable    = false

  validation {
    condition = (
      var.kms_key == "create" ||
      var.kms_key == "alias/aws/sns" ||
      can(regex("^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-zA-Z-]+$", var.kms_key))
    )
    error_message = "kms_key must be \"create\", \"alias/aws/sns\", or a KMS key ARN (arn:...:kms:...:key/...)."
  }
}

variable "longest_action_seconds" {
  description = "How long the daemon's longest action can take for one message, including its retries (the daemon's action timeout). Sizes the queue's visibility timeout (2 x this + 30 s) and the task's stop timeout (this + 10 s, at most 120 s on Fargate)."
  type        = number
  default     = 60

  validation {
    condition     = var.longest_action_seconds >= 1 && var.longest_action_seconds <= 21585 && floor(var.longest_action_seconds) == var.longest_action_seconds
    error_message = "longest_action_seconds must be a whole number from 1 to 21585 (the visibility timeout, 2 x this + 30, must stay within SQS's 12 hours)."
  }
}

variable "max_receive_count" {
  description = "How many times a message is received before SQS moves it to the dead-letter queue (the redrive policy's maxReceiveCount)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be a whole number from 1 to 1000."
  }
}

variable "message_retention_seconds" {
  description = "How long the main queue keeps a message. The dead-letter queue keeps messages 14 days, counted from their first enqueue, so keep this well below that."
  type        = number
  default     = 345600 # 4 days

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 604800
    error_message = "message_retention_seconds must be from 60 to 604800 (7 days), leaving at least 7 days in the dead-letter queue."
  }
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message in the main queue is older than this: reflex is not keeping up, or is stuck."
  type        = number
  default     = 600

  validation {
    condition     = var.oldest_message_alarm_seconds >= 60
    error_message = "oldest_message_alarm_seconds must be at least 60."
  }
}

variable "log_retention_days" {
  description = "Retention of the daemon's log group. Its logs are the audit trail of what reflex did, so keep a year or more."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "desired_count" {
  description = "Number of daemon tasks: 0 to pause (messages wait in the queue), 1 to run, more only with state_backend = \"dynamodb\", where replicas share claims, cooldowns, rate limits and target leases. With the local store each task has its own state, so a second task would act twice and double every limit."
  type        = number
  default     = 1

  validation {
    condition     = var.desired_count >= 0 && var.desired_count <= 16 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number from 0 to 16."
  }
}

variable "state_backend" {
  description = "Where the daemon keeps its dedup claims, cooldowns, rate limits and target leases. \"local\" (default): a file on a task volume, kept while the task lives; one task only. \"dynamodb\": a table the module creates, shared by every task, so desired_count may exceed 1 and state survives task replacement."
  type        = string
  default     = "local"
  nullable    = false

  validation {
    condition     = contains(["local", "dynamodb"], var.state_backend)
    error_message = "state_backend must be \"local\" or \"dynamodb\"."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.task_cpu)
    error_message = "task_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB; must be a valid combination with task_cpu."
  type        = number
  default     = 512

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 30720
    error_message = "task_memory must be from 512 to 30720 MiB."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the task; build the image for the same platform (docker build --platform linux/amd64 or linux/arm64)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete the ECR repository even if it still holds images."
  type        = bool
  default     = false
}

variable "iam_role_name_prefix" {
  description = "Prefix of the two IAM role names (<prefix>-daemon, <prefix>-execution). Default: <name>-<region>, so stacks in several regions of one account do not collide."
  type        = string
  default     = null

  validation {
    condition     = var.iam_role_name_prefix == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,54}$", var.iam_role_name_prefix))
    error_message = "iam_role_name_prefix must be 1-54 of A-Z a-z 0-9 + = , . @ _ - (the role names add up to 10 characters and IAM allows 64)."
  }
}

variable "iam_role_path" {
  description = "Path of the two IAM roles. Organizations often require one (e.g. /workloads/) in a service control policy."
  type        = string
  default     = "/"
  nullable    = false

  validation {
    condition     = can(regex("^/([!-~]{0,510}/)?$", var.iam_role_path))
    error_message = "iam_role_path must start and end with / (e.g. / or /workloads/reflex/)."
  }
}

variable "permissions_boundary_arn" {
  description = "Managed policy set as the permissions boundary of both IAM roles. Organizations often require one before any role can be created. null: no boundary."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-zA-Z-]*:iam::([0-9]{12}|aws):policy/.+$", var.permissions_boundary_arn))
    error_message = "permissions_boundary_arn must be an IAM managed policy ARN (arn:...:iam::<account>:policy/...)."
  }
}

variable "tags" {
  description = "Tags added to every resource the module creates."
  type        = map(string)
  default     = {}
}

variable "rules_dir" {
  description = "A local directory of rule files (every *.toml under it, subdirectories included). Set: the module uploads them to a versioned, KMS-encrypted S3 bucket, and every task reads its rules from there, polling for changes (30 s by default), so a rule edit reaches every replica on the next `terraform apply` with no image build. null (default): the task runs the rules baked into its image."
  type        = string
  default     = null

  validation {
    condition     = var.rules_dir == null || length(fileset(coalesce(var.rules_dir, "."), "**/*.toml")) > 0
    error_message = "rules_dir must be a directory holding at least one *.toml rule file (paths are relative to where terraform runs; use path.module in a module)."
  }
}

variable "rules_bucket_force_destroy" {
  description = "Let terraform destroy delete the rules bucket with every version of every rule file in it. The bucket is versioned, so without this a destroy fails on it."
  type        = bool
  default     = false
  nullable    = false
}
