variable "region" {
  description = "Region of the load balancer, and so of reflex."
  type        = string
}

variable "target_group_arn" {
  description = "ARN of the existing ALB target group (instance targets) whose unhealthy instances reflex replaces."
  type        = string
}

variable "load_balancer_arn" {
  description = "ARN of the ALB the target group is attached to (the alarm's LoadBalancer dimension)."
  type        = string
}

variable "autoscaling_group_name" {
  description = "Auto Scaling group that owns the target group's instances. It gets the managed tag, propagated at launch."
  type        = string
}

variable "vpc_id" {
  description = "VPC for the reflex task."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (with NAT or VPC endpoints) for the reflex task."
  type        = list(string)
}

variable "operator_topic_arn" {
  description = "SNS topic that pages the operators: alarms on reflex itself, and reflex's own notifications."
  type        = string
}

variable "image_tag" {
  description = "Tag of the reflex image pushed to the module's repository (see README)."
  type        = string
}

variable "unhealthy_minutes" {
  description = "Minutes a target must stay unhealthy before the alarm fires and reflex acts."
  type        = number
  default     = 3

  validation {
    condition     = var.unhealthy_minutes >= 1 && var.unhealthy_minutes <= 60
    error_message = "unhealthy_minutes must be from 1 to 60."
  }
}

variable "desired_count" {
  description = "1 to run reflex, 0 to create or keep the stack with no task (first deploy, pause, teardown)."
  type        = number
  default     = 1
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete reflex's image repository with its images."
  type        = bool
  default     = false
}
