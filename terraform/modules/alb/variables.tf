variable "name" {
  description = "Name of the load balancer (also prefixes its target group and security group)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,26}[a-z0-9]$", var.name))
    error_message = "name: 3-28 characters (ALB and target group names are limited to 32 with suffixes), lowercase letters, digits and hyphens."
  }
}

variable "vpc_id" {
  description = "VPC of the load balancer and its targets."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets of the load balancer (two availability zones at least)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "An application load balancer needs subnets in at least two availability zones."
  }
}

variable "ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach the listeners."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.ingress_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))])
    error_message = "ingress_cidrs must be IPv4 CIDRs such as 203.0.113.0/24."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener on 443 (HTTP on 80 then redirects to it); null = plain HTTP on 80."
  type        = string
  default     = null
  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be null or an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "target_port" {
  description = "Port the targets (Fargate tasks, by IP) listen on."
  type        = number
  default     = 4200
  validation {
    condition     = var.target_port >= 1 && var.target_port <= 65535
    error_message = "target_port must be a TCP port number."
  }
}

variable "health_check_path" {
  description = "HTTP path the target group checks (200 = healthy)."
  type        = string
  default     = "/api/health"
  validation {
    condition     = startswith(var.health_check_path, "/")
    error_message = "health_check_path must start with /."
  }
}

variable "idle_timeout_seconds" {
  description = "Idle timeout of connections (the UI keeps websockets open for events)."
  type        = number
  default     = 120
  validation {
    condition     = var.idle_timeout_seconds >= 1 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be between 1 and 4000."
  }
}
