variable "name" {
  description = "Name prefix of the host's resources (instance, role, security group)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name: 3-32 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the host."
  type        = string
  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "Public subnet of the host (it gets an Elastic IP)."
  type        = string
  validation {
    condition     = can(regex("^subnet-[0-9a-f]+$", var.subnet_id))
    error_message = "subnet_id must look like subnet-0123456789abcdef0."
  }
}

variable "ami_id" {
  description = "AMI of the host: Amazon Linux 2023, Ubuntu 22.04/24.04 or Debian 12 (what ec2-userdata.sh supports)."
  type        = string
  validation {
    condition     = can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  description = "EC2 instance type; the platform needs 2 GiB of RAM at least (t3.small)."
  type        = string
  default     = "t3.small"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type)) && !contains(["t3.nano", "t3.micro", "t3a.nano", "t3a.micro", "t2.nano", "t2.micro", "t4g.nano", "t4g.micro"], var.instance_type)
    error_message = "instance_type must be an instance type name (family.size) with at least 2 GiB of RAM (not *.nano or *.micro)."
  }
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume in GiB (images, Postgres, DuckDB, swap)."
  type        = number
  default     = 30
  validation {
    condition     = var.root_volume_size_gb >= 20 && var.root_volume_size_gb <= 16384
    error_message = "root_volume_size_gb must be between 20 and 16384."
  }
}

variable "ebs_kms_key_id" {
  description = "Customer-managed KMS key ARN for the root volume; null = the account's aws/ebs key."
  type        = string
  default     = null
}

variable "ingress_ports" {
  description = "TCP ports open to ingress_cidrs: 80 and 443 for the HTTPS front door (add 4200 only for the plain UI port)."
  type        = list(number)
  default     = [80, 443]
  validation {
    condition     = alltrue([for p in var.ingress_ports : p >= 1 && p <= 65535 && floor(p) == p && p != 22])
    error_message = "ingress_ports must be TCP port numbers (1-65535); 22 goes through ssh_cidrs, on purpose."
  }
}

variable "ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach ingress_ports."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.ingress_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))])
    error_message = "ingress_cidrs must be IPv4 CIDRs such as 203.0.113.7/32."
  }
}

variable "ssh_cidrs" {
  description = "IPv4 CIDRs allowed on port 22; empty (the default) keeps SSH closed: use SSM Session Manager."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c)) && c != "0.0.0.0/0"])
    error_message = "ssh_cidrs must be IPv4 CIDRs, and never 0.0.0.0/0."
  }
}

variable "secret_arn" {
  description = "ARN of the one Secrets Manager secret the host may read (its .env values)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.secret_arn))
    error_message = "secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "secret_kms_key_arn" {
  description = "Customer-managed KMS key of the secret, if any: the role may then decrypt with it through Secrets Manager only."
  type        = string
  default     = null
}

variable "backup_bucket" {
  description = "Name of the S3 bucket that receives backups."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.backup_bucket))
    error_message = "backup_bucket must be a valid S3 bucket name."
  }
}

variable "backup_prefix" {
  description = "The one key prefix of backup_bucket the host may write (and list), e.g. prefect-platform/prod/."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9!_.'()-][A-Za-z0-9!_.'()/-]*/$", var.backup_prefix))
    error_message = "backup_prefix must be a non-empty key prefix ending with / (letters, digits, !_.'()-/), without a leading /."
  }
}

variable "bootstrap_script" {
  description = "Text of the bootstrap script (the project's ec2-userdata.sh); the settings are prepended to it."
  type        = string
}

variable "bootstrap_settings" {
  description = "Environment of the bootstrap script (REPO_URL, REPO_REF, SECRET_ID, ...): prepended as NAME=$${NAME:-value} lines, so a re-run may still override them."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.bootstrap_settings : can(regex("^[A-Z_][A-Z0-9_]*$", k)) && !strcontains(v, "\n")])
    error_message = "bootstrap_settings: keys must be environment variable names, values single lines."
  }
}

variable "elastic_ip" {
  description = "Whether to give the host an Elastic IP (a stable address across stop/start)."
  type        = bool
  default     = true
}
