# An ALB target group's UnHealthyHostCount alarm → reflex → each unhealthy
# instance is marked Unhealthy in its Auto Scaling group, which drains it
# (lifecycle hooks, deregistration delay) and launches its replacement.
#
# The rule that does this is rules/alb-replace-through-asg.toml, baked into
# the image; see README.md.

data "aws_lb_target_group" "web" {
  arn = var.target_group_arn
}

data "aws_lb" "web" {
  arn = var.load_balancer_arn
}

module "reflex" {
  source = "../.."

  name               = "reflex"
  image_tag          = var.image_tag
  vpc_id             = var.vpc_id
  subnet_ids         = var.subnet_ids
  operator_topic_arn = var.operator_topic_arn
  # The Auto Scaling writes are allowed only on these groups, and only
  # while they carry the managed tag.
  auto_scaling_group_names = [var.autoscaling_group_name]
  target_group_arns        = [data.aws_lb_target_group.web.arn]
  desired_count            = var.desired_count
  ecr_force_delete         = var.ecr_force_delete
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  # rules/alb-replace-through-asg.toml matches the `-tg-unhealthy-hosts` suffix.
  alarm_name        = "${data.aws_lb_target_group.web.name}-tg-unhealthy-hosts"
  alarm_description = "Targets of ${data.aws_lb_target_group.web.name} fail the health check. reflex marks the unhealthy instances carrying ${module.reflex.managed_tag.key}=${module.reflex.managed_tag.value} Unhealthy in their Auto Scaling group."

  namespace   = "AWS/ApplicationELB"
  metric_name = "UnHealthyHostCount"
  # Both dimensions: the metric exists per (target group, load balancer).
  dimensions = {
    TargetGroup  = data.aws_lb_target_group.web.arn_suffix
    LoadBalancer = data.aws_lb.web.arn_suffix
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.unhealthy_minutes
  datapoints_to_alarm = var.unhealthy_minutes
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  actions_enabled = true
  alarm_actions   = [module.reflex.alarm_topic_arn]
}

# The group must carry the managed tag for the Auto Scaling writes
# (autoscaling:ResourceTag), and propagating it at launch tags the
# instances for require_tag.
resource "aws_autoscaling_group_tag" "reflex_managed" {
  autoscaling_group_name = var.autoscaling_group_name

  tag {
    key                 = module.reflex.managed_tag.key
    value               = module.reflex.managed_tag.value
    propagate_at_launch = true
  }
}
