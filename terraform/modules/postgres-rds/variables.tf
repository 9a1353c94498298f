variable "name" {
  description = "Identifier of the DB instance and prefix of its subnet group and security group."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,50}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name: 3-52 characters, lowercase letters, digits and single hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the database."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the DB subnet group (two availability zones at least)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "An RDS subnet group needs subnets in at least two availability zones."
  }
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect on the Postgres port (the Prefect server's tasks)."
  type        = list(string)
}

variable "instance_class" {
  description = "DB instance class."
  type        = string
  default     = "db.t4g.micro"
  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_class))
    error_message = "instance_class must look like db.t4g.micro."
  }
}

variable "engine_version" {
  description = "Postgres version: a major version (15) lets RDS pick and upgrade the minor version."
  type        = string
  default     = "15"
  validation {
    condition     = can(regex("^1[4-7](\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must be a Postgres 14-17 version such as 15 or 15.8."
  }
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage in GiB."
  type        = number
  default     = 20
  validation {
    condition     = var.allocated_storage_gb >= 20 && var.allocated_storage_gb <= 65536
    error_message = "allocated_storage_gb must be between 20 and 65536."
  }
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GiB (0 = no autoscaling)."
  type        = number
  default     = 100
  validation {
    condition     = var.max_allocated_storage_gb == 0 || var.max_allocated_storage_gb >= 20
    error_message = "max_allocated_storage_gb must be 0 or at least 20."
  }
}

variable "db_name" {
  description = "Name of the database Prefect uses."
  type        = string
  default     = "prefect"
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must be a lowercase identifier (letters, digits, _), starting with a letter."
  }
}

variable "username" {
  description = "Master user name; its password is generated and kept by RDS in Secrets Manager."
  type        = string
  default     = "prefect"
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.username)) && !contains(["admin", "postgres", "rdsadmin"], var.username)
    error_message = "username must be a lowercase identifier, and not a reserved name (admin, postgres, rdsadmin)."
  }
}

variable "kms_key_id" {
  description = "Customer-managed KMS key ARN for storage encryption; null = aws/rds."
  type        = string
  default     = null
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery)."
  type        = number
  default     = 7
  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "multi_az" {
  description = "Whether to keep a standby in a second availability zone (doubles the instance cost)."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Whether the database refuses deletion (turn off before a destroy)."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Whether destroy deletes the database without a final snapshot (throwaway environments only)."
  type        = bool
  default     = false
}
