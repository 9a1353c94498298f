variable "name" {
  description = "Name of the ECS service, its task definition family and its container."
  type        = string
  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9_-]{0,254}$", var.name))
    error_message = "name must start with a letter and hold letters, digits, _ and - only."
  }
}

variable "cluster_arn" {
  description = "ECS cluster of the service."
  type        = string
}

variable "image" {
  description = "Container image (a registry reference with tag or digest)."
  type        = string
}

variable "command" {
  description = "Command of the container (overrides the image's CMD)."
  type        = list(string)
}

variable "cpu" {
  description = "Task CPU units (256 = 0.25 vCPU)."
  type        = number
  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Task memory in MiB (must be a valid Fargate pairing with cpu)."
  type        = number
  validation {
    condition     = var.memory >= 512 && var.memory <= 122880
    error_message = "memory must be between 512 and 122880 MiB."
  }
}

variable "environment" {
  description = "Plain environment variables of the container (never secrets: the console shows them)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables injected from Secrets Manager at start: name => secret ARN (optionally ARN:json-key::)."
  type        = map(string)
  default     = {}
}

variable "execution_role_arn" {
  description = "Role ECS uses to pull the image, write logs and read the secrets."
  type        = string
}

variable "task_role_arn" {
  description = "Role the container's code runs as; null = no AWS credentials in the container."
  type        = string
  default     = null
}

variable "log_group_name" {
  description = "CloudWatch log group of the container's output."
  type        = string
}

variable "region" {
  description = "Region of the log group."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the tasks."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Whether tasks get a public IPv4 address (needed in public subnets without a NAT gateway, to pull images and reach APIs)."
  type        = bool
  default     = true
}

variable "container_port" {
  description = "Port the container listens on; null = none."
  type        = number
  default     = null
}

variable "target_group_arn" {
  description = "Load balancer target group to register the tasks in (needs container_port); null = none."
  type        = string
  default     = null
}

variable "service_registry_arn" {
  description = "Cloud Map service to register the tasks in (private DNS); null = none."
  type        = string
  default     = null
}

variable "health_check_grace_period_seconds" {
  description = "Seconds the load balancer's health check is ignored after a task starts (database migrations)."
  type        = number
  default     = 300
}

variable "desired_count" {
  description = "Number of tasks (0 stops the service)."
  type        = number
  default     = 1
  validation {
    condition     = var.desired_count >= 0 && var.desired_count <= 1
    error_message = "desired_count must be 0 or 1: neither the Prefect server with in-process services nor this worker is meant to run twice."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the tasks: X86_64 or ARM64 (cheaper; needs a multi-arch image)."
  type        = string
  default     = "X86_64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}
