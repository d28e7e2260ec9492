# Where the daemon runs: one Fargate task, its image repository and its logs.

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

resource "aws_ecr_lifecycle_policy" "reflex" {
  repository = aws_ecr_repository.reflex.name

  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 30 most recent images, enough to roll back."
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 30
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

  egress {
    description = "HTTPS to AWS API endpoints and ECR"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.egress_cidr_blocks
  }

  tags = var.tags
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

  container_definitions = jsonencode([{
    name      = local.container_name
    image     = local.image
    essential = true
    user      = local.container_user
    # The rules and the config are baked into the image; the daemon writes
    # nothing to disk.
    readonlyRootFilesystem = true
    privileged             = false
    stopTimeout            = local.stop_timeout_seconds
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    # reflex run reads these through clap `env` and they override the baked
    # config file.
    environment = [
      { name = "AWS_REGION", value = local.region },
      { name = "REFLEX_QUEUE_URL", value = aws_sqs_queue.main.url },
      { name = "REFLEX_DLQ_URL", value = aws_sqs_queue.dead_letter.url },
      { name = "REFLEX_TRUSTED_TOPIC_ARNS", value = aws_sns_topic.alarm.arn },
    ]
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

  # Stop the old task before starting the new one: two daemons at once would
  # each apply their own rate limits and blast-radius caps. Messages wait in
  # the queue meanwhile.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

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
}
