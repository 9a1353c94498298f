terraform {
  # 1.11: write-only arguments (generated passwords never enter the state).
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ Project = "prefect-platform", Stack = var.name }, var.tags)
  }
}
