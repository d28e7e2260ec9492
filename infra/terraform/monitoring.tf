# Alarms on reflex itself, sent to the operators' topic (never to the alarm
# topic: reflex would then be remediating its own alarms).

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name        = "${var.name}-dead-letters"
  alarm_description = "A message reached ${aws_sqs_queue.dead_letter.name}: reflex could not decode or handle it after ${var.max_receive_count} receives. Inspect it, fix the cause, then redrive it."

  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  # SQS stops sending metrics for a queue idle for six hours; an idle
  # dead-letter queue is an empty one.
  treat_missing_data = "notBreaching"

  actions_enabled = true
  alarm_actions   = [var.operator_topic_arn]
  ok_actions      = [var.operator_topic_arn]
  tags            = var.tags

  lifecycle {
    precondition {
      condition     = var.operator_topic_arn != aws_sns_topic.alarm.arn
      error_message = "operator_topic_arn must not be the module's alarm topic: reflex would consume the alarms about itself."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  alarm_name        = "${var.name}-oldest-message-age"
  alarm_description = "The oldest message in ${aws_sqs_queue.main.name} is older than ${var.oldest_message_alarm_seconds} s: reflex is stuck, down, or not keeping up."

  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_alarm_seconds
  treat_missing_data  = "notBreaching"

  actions_enabled = true
  alarm_actions   = [var.operator_topic_arn]
  ok_actions      = [var.operator_topic_arn]
  tags            = var.tags
}

# The daemon puts reflex/Heartbeat (dimension Queue = queue name) once per
# interval (60 s) in which a ReceiveMessage succeeded: a poll loop that is
# stuck or denied stops the heartbeat, not only a dead task. No heartbeat
# for ten minutes means the task is down, crash-looping, or alive but unable
# to receive; missing data is therefore breaching. ECS's RunningTaskCount
# would miss the stuck case.
#
# The alarm exists only while reflex should run (desired_count > 0).
# CloudWatch acts on state changes only: an alarm kept through a pause sits
# in ALARM and would never page after a resume. Created on resume, it starts
# from INSUFFICIENT_DATA and pages if the heartbeat does not come.
resource "aws_cloudwatch_metric_alarm" "not_running" {
  count = var.desired_count > 0 ? 1 : 0

  alarm_name        = "${var.name}-not-running"
  alarm_description = "reflex has put no Heartbeat for ${aws_sqs_queue.main.name} in 10 minutes: the daemon is not running, or its poll loop is stuck or cannot receive. Check the ${aws_ecs_service.daemon.name} service and the ${aws_cloudwatch_log_group.daemon.name} logs."

  namespace           = "reflex"
  metric_name         = "Heartbeat"
  dimensions          = { Queue = aws_sqs_queue.main.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"

  actions_enabled = true
  alarm_actions   = [var.operator_topic_arn]
  ok_actions      = [var.operator_topic_arn]
  tags            = var.tags
}

# A task whose reflex container exits with a non-zero code (a crash, a bad
# config, a denied start-up call) pages at once, even when it crash-loops
# faster than the heartbeat alarm's ten minutes. The event goes to the
# operator topic as is; its detail has the task, stoppedReason and exit code.
# The operator topic's policy must let events.amazonaws.com publish (see
# README, "Alarms on reflex").
resource "aws_cloudwatch_event_rule" "task_stopped" {
  name        = "${var.name}-task-stopped"
  description = "A ${var.name} task stopped with a non-zero exit code of its reflex container."

  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn = [aws_ecs_cluster.reflex.arn]
      group      = ["service:${var.name}"]
      lastStatus = ["STOPPED"]
      containers = {
        name     = [local.container_name]
        exitCode = [{ "anything-but" = 0 }]
      }
    }
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "task_stopped" {
  rule      = aws_cloudwatch_event_rule.task_stopped.name
  target_id = "operator-topic"
  arn       = var.operator_topic_arn

  lifecycle {
    # CloudWatch alarm actions and EventBridge rule targets reach SNS topics
    # in their own region only.
    precondition {
      condition     = split(":", var.operator_topic_arn)[3] == local.region
      error_message = "operator_topic_arn must be a topic in this stack's region: CloudWatch alarms and EventBridge rules publish to topics in their own region only."
    }
  }
}
