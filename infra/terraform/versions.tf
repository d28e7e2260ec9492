terraform {
  # check blocks (main.tf) need 1.5; the module's tests (override_data in
  # run blocks) need 1.7.
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # scripts/check-terraform validates (and runs terraform test) against
      # the newest 5.x and 6.x in its offline provider mirror, and names a
      # major the mirror lacks as skipped.
      version = ">= 5.100, < 7.0"
    }
  }
}
