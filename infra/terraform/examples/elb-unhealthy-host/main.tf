# A classic ELB's UnHealthyHostCount alarm → reflex → the OutOfService
# instances are terminated and the Auto Scaling group replaces them.
#
# The rule that turns this alarm into "terminate the OutOfService instances
# of the alarm's LoadBalancerName" is in rules/ beside this file, with its
# tests in rule-tests/. The module uploads rules/ to its rules bucket, and
# reflex reads it from there: a rule edit ships with `terraform apply`, no
# image build. See README.md.

data "aws_elb" "web" {
  name = var.elb_name
}

module "reflex" {
  source = "../.."

  name                = "reflex"
  image_tag           = var.image_tag
  vpc_id              = var.vpc_id
  subnet_ids          = var.subnet_ids
  operator_topic_arn  = var.operator_topic_arn
  load_balancer_names = [data.aws_elb.web.name]
  desired_count       = var.desired_count
  ecr_force_delete    = var.ecr_force_delete

  # Every *.toml here goes to the rules bucket; each task polls it and
  # loads a changed set within 30 s, after validating it whole.
  rules_dir                  = "${path.module}/rules"
  rules_bucket_force_destroy = var.rules_bucket_force_destroy
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_hosts" {
  alarm_name        = "${data.aws_elb.web.name}-unhealthy-hosts"
  alarm_description = "Instances behind ${data.aws_elb.web.name} fail the health check. reflex terminates the OutOfService ones carrying ${module.reflex.managed_tag.key}=${module.reflex.managed_tag.value}."

  namespace           = "AWS/ELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancerName = data.aws_elb.web.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.unhealthy_minutes
  datapoints_to_alarm = var.unhealthy_minutes
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  # The ELB reports nothing while no instance is registered: not a reason to act.
  treat_missing_data = "notBreaching"

  actions_enabled = true
  alarm_actions   = [module.reflex.alarm_topic_arn]
}

# reflex may only terminate instances carrying the managed tag (IAM enforces
# it). Tagging the group's launches opts its instances in; instances already
# running keep their tags until replaced, so tag those by hand if needed.
resource "aws_autoscaling_group_tag" "reflex_managed" {
  count = var.autoscaling_group_name == null ? 0 : 1

  autoscaling_group_name = var.autoscaling_group_name

  tag {
    key                 = module.reflex.managed_tag.key
    value               = module.reflex.managed_tag.value
    propagate_at_launch = true
  }
}
