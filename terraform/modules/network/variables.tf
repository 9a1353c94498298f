variable "name" {
  description = "Name prefix of every resource (Name tags)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name: 3-32 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "cidr_block" {
  description = "IPv4 CIDR of the VPC (/16 to /20); public subnets take the first /24s, private subnets the /24s of its second half."
  type        = string
  default     = "10.42.0.0/16"
  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && can(regex("^[0-9.]+/(1[6-9]|20)$", var.cidr_block))
    error_message = "cidr_block must be an IPv4 CIDR from /16 to /20 (e.g. 10.42.0.0/16)."
  }
}

variable "az_count" {
  description = "How many availability zones get a subnet of each kind (an ALB and an RDS subnet group need 2)."
  type        = number
  default     = 1
  validation {
    condition     = var.az_count >= 1 && var.az_count <= 3
    error_message = "az_count must be 1, 2 or 3."
  }
}

variable "private_subnets" {
  description = "Whether to create private subnets too (no route to the internet: for RDS)."
  type        = bool
  default     = false
}
