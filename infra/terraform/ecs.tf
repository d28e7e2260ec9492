# Where the daemon runs: Fargate tasks (one with the local state store, any
# number with the DynamoDB one), its image repository and its logs.

resource "aws_ecr_repository" "reflex" {
  name = var.name
  # A tag names one image forever, so a task definition revision always runs
  # the image (and the rules baked into it) it was planned with.
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.ecr_force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  # The AWS-managed ECR key: pulling needs no key grant for the execution role.
  encryption_configuration {
    encryption_type = "KMS"
  }

  tags = var.tags
}

# Tagged images are never expired: a task definition revision pins one tag,
# and expiring it would break the running service's next task start and
# every rollback. Tags are immutable, so each tag is one deliberate build;
# delete old ones by hand when you no longer want to roll back to them.
# Untagged images (layers of interrupted pushes, manifests replaced by a
# multi-platform push) are never referenced by a task and go after a week.
resource "aws_ecr_lifecycle_policy" "reflex" {
  repository = aws_ecr_repository.reflex.name

  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Expire untagged images after 7 days; tagged images are kept."
      selection = {
        tagStatus   = "untagged"
        countType   = "sinceImagePushed"
        countUnit   = "days"
        countNumber = 7
      }
      action = { type = "expire" }
    }]
  })
}

resource "aws_cloudwatch_log_group" "daemon" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.customer_kms_key_arn
  tags              = var.tags
}

resource "aws_ecs_cluster" "reflex" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_security_group" "daemon" {
  name        = "${var.name}-daemon"
  description = "reflex daemon: no inbound; HTTPS out to AWS APIs and ECR."
  vpc_id      = var.vpc_id

  dynamic "egress" {
    for_each = length(var.egress_cidr_blocks) > 0 ? [1] : []

    content {
      description = "HTTPS to AWS API endpoints and ECR"
      from_port   = 443
      to_port     = 443
      protocol    = "tcp"
      cidr_blocks = var.egress_cidr_blocks
    }
  }

  # VPC endpoints: the S3 gateway endpoint (ECR layers) is reached through
  # its prefix list, not a CIDR.
  dynamic "egress" {
    for_each = length(var.egress_prefix_list_ids) > 0 ? [1] : []

    content {
      description     = "HTTPS to VPC endpoints by prefix list (S3 gateway for ECR layers)"
      from_port       = 443
      to_port         = 443
      protocol        = "tcp"
      prefix_list_ids = var.egress_prefix_list_ids
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(var.egress_cidr_blocks) + length(var.egress_prefix_list_ids) > 0
      error_message = "egress_cidr_blocks and egress_prefix_list_ids are both empty: the task could reach neither the AWS APIs nor ECR. List at least one CIDR block or prefix list."
    }
  }
}

resource "aws_ecs_task_definition" "daemon" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  task_role_arn            = aws_iam_role.daemon.arn
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Task storage for the local state store and the rules cache (no host
  # path on Fargate).
  dynamic "volume" {
    for_each = local.task_volume ? [1] : []

    content {
      name = "state"
    }
  }

  container_definitions = jsonencode([{
    name      = local.container_name
    image     = local.image
    essential = true
    user      = local.container_user
    # The config (and, without rules_dir, the rules) is baked into the
    # image; the daemon writes only the local state store and the rules
    # cache, on their own volume (mountPoints below).
    readonlyRootFilesystem = true
    privileged             = false
    stopTimeout            = local.stop_timeout_seconds
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    # reflex run reads these (clap `env`), and they override the baked
    # config file. The timing comes from the same locals as the queue's
    # visibility timeout and this container's stopTimeout (main.tf).
    environment = concat([
      { name = "AWS_REGION", value = local.region },
      { name = "REFLEX_QUEUE_URL", value = aws_sqs_queue.main.url },
      { name = "REFLEX_DLQ_URL", value = aws_sqs_queue.dead_letter.url },
      { name = "REFLEX_TRUSTED_TOPIC_ARNS", value = aws_sns_topic.alarm.arn },
      { name = "REFLEX_METRICS_LISTEN", value = local.metrics_listen },
      { name = "REFLEX_VISIBILITY_TIMEOUT", value = "${local.visibility_timeout_seconds}s" },
      { name = "REFLEX_HEARTBEAT", value = "${local.heartbeat_seconds}s" },
      { name = "REFLEX_SHUTDOWN_GRACE", value = "${local.shutdown_grace_seconds}s" },
      { name = "REFLEX_STATE_BACKEND", value = var.state_backend },
      ], local.state_dynamodb ? [
      { name = "REFLEX_STATE_TABLE", value = aws_dynamodb_table.state[0].name },
      ] : [
      { name = "REFLEX_STATE_PATH", value = local.state_path },
      ], local.rules_from_s3 ? [
      # The rules from the bucket (rules.tf) instead of the image's; the
      # last good set cached on the task volume; a rejected set told to
      # the operators (the daemon may already publish there).
      { name = "REFLEX_RULES_SOURCE", value = local.rules_source },
      { name = "REFLEX_RULES_CACHE", value = local.rules_cache_path },
      { name = "REFLEX_RULES_REJECTED_TOPIC_ARN", value = var.operator_topic_arn },
    ] : [])
    # The local store's file and the rules cache: the root filesystem stays
    # read-only, the daemon writes to a task volume. It lives as long as the
    # task; state that must outlive a task replacement needs
    # state_backend = "dynamodb", and a replacement task starts without the
    # rules cache.
    mountPoints = local.task_volume ? [
      { sourceVolume = "state", containerPath = local.state_volume_path, readOnly = false },
    ] : []
    # /readyz (rules loaded, queue reachable) on loopback, checked by the
    # binary itself: the distroless image has no shell and no curl. An
    # unhealthy task is replaced; a stuck or denied daemon does not linger.
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/reflex", "health", "--listen", local.metrics_listen]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.daemon.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "reflex"
      }
    }
  }])

  tags = var.tags
}

resource "aws_ecs_service" "daemon" {
  name             = var.name
  cluster          = aws_ecs_cluster.reflex.id
  task_definition  = aws_ecs_task_definition.daemon.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  # With the local store, stop the old task before starting the new one:
  # two daemons at once would each keep their own claims, rate limits and
  # blast-radius caps. Messages wait in the queue meanwhile. With DynamoDB
  # the replicas share that state, so a rolling deployment keeps them
  # running.
  deployment_minimum_healthy_percent = local.state_dynamodb ? 100 : 0
  deployment_maximum_percent         = local.state_dynamodb ? 200 : 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.daemon.id]
    assign_public_ip = var.assign_public_ip
  }

  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true
  wait_for_steady_state   = false

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.desired_count <= 1 || local.state_dynamodb
      error_message = "desired_count > 1 needs state_backend = \"dynamodb\": with the local store every task keeps its own claims, cooldowns and rate limits, so replicas would act twice on one alarm and multiply every limit."
    }
  }
}
