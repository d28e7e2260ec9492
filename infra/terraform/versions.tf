terraform {
  # check blocks (main.tf) need 1.5.
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # scripts/check-terraform validates against 5.100 offline. 6.x is
      # allowed but not validated there.
      version = ">= 5.100, < 7.0"
    }
  }
}
