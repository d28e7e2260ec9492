variable "region" {
  description = "Region of the load balancer, and so of reflex."
  type        = string
}

variable "elb_name" {
  description = "Name of the existing classic load balancer whose OutOfService instances reflex terminates."
  type        = string
}

variable "autoscaling_group_name" {
  description = "Auto Scaling group behind the load balancer. It replaces what reflex terminates, and its instances get the managed tag at launch. null: tag the instances yourself."
  type        = string
  default     = null
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
  description = "Minutes a host must stay unhealthy before the alarm fires and reflex acts."
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

variable "rules_bucket_force_destroy" {
  description = "Let terraform destroy delete the rules bucket with every version of the rule files."
  type        = bool
  default     = false
}
