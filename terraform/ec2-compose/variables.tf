variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "us-east-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "name" {
  description = "Name of the stack: prefix of every resource, and the default secret name (<name>/platform)."
  type        = string
  default     = "prefect-platform"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name: 3-32 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# ---- Network ----
variable "vpc_id" {
  description = "Existing VPC to use; null = create a small VPC with one public subnet."
  type        = string
  default     = null
  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be null or look like vpc-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "Existing public subnet (with a route to an internet gateway) in vpc_id; required with vpc_id."
  type        = string
  default     = null
  validation {
    condition     = var.subnet_id == null || can(regex("^subnet-[0-9a-f]+$", var.subnet_id))
    error_message = "subnet_id must be null or look like subnet-0123456789abcdef0."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created when vpc_id is null (/16 to /20)."
  type        = string
  default     = "10.42.0.0/16"
  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("^[0-9.]+/(1[6-9]|20)$", var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR from /16 to /20."
  }
}

variable "ingress_ports" {
  description = "TCP ports open to ingress_cidrs: 80/443 for an HTTPS front door; [4200] with your own /32 for the plain UI port."
  type        = list(number)
  default     = [80, 443]
  validation {
    condition     = alltrue([for p in var.ingress_ports : p >= 1 && p <= 65535 && floor(p) == p && p != 22])
    error_message = "ingress_ports must be TCP port numbers; 22 goes through ssh_cidrs."
  }
}

variable "ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach ingress_ports (default: anywhere)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.ingress_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))])
    error_message = "ingress_cidrs must be IPv4 CIDRs such as 203.0.113.7/32."
  }
}

variable "ssh_cidrs" {
  description = "IPv4 CIDRs allowed on port 22; empty (default) keeps SSH closed: connect with SSM Session Manager."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c)) && c != "0.0.0.0/0"])
    error_message = "ssh_cidrs must be IPv4 CIDRs, and never 0.0.0.0/0."
  }
}

# ---- Host ----
variable "instance_type" {
  description = "Instance type (2 GiB of RAM at least)."
  type        = string
  default     = "t3.small"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type)) && !can(regex("\\.(nano|micro)$", var.instance_type))
    error_message = "instance_type must be an instance type name (family.size) with at least 2 GiB of RAM (not *.nano or *.micro)."
  }
}

variable "ami_id" {
  description = "AMI of the host; null = the latest Amazon Linux 2023 (x86_64) from the public SSM parameter, resolved at creation only."
  type        = string
  default     = null
  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id must be null or look like ami-0123456789abcdef0."
  }
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume in GiB."
  type        = number
  default     = 30
  validation {
    condition     = var.root_volume_size_gb >= 20 && var.root_volume_size_gb <= 16384
    error_message = "root_volume_size_gb must be between 20 and 16384."
  }
}

variable "ebs_kms_key_id" {
  description = "Customer-managed KMS key ARN for the root volume; null = aws/ebs."
  type        = string
  default     = null
}

# ---- Code and secret ----
variable "repo_url" {
  description = "REPO_URL of ec2-userdata.sh: git URL (https://, ssh, file://) or a .tar.gz URL of this project."
  type        = string
  validation {
    condition     = can(regex("^(https://|ssh://|git@|file://|s3://)[^\\s'\"]+$", var.repo_url))
    error_message = "repo_url must be an https://, ssh://, git@, file:// or s3:// URL without spaces or quotes."
  }
}

variable "repo_ref" {
  description = "REPO_REF of ec2-userdata.sh: the branch, tag or commit to run (a tag in production)."
  type        = string
  default     = "main"
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$", var.repo_ref))
    error_message = "repo_ref must be a git ref name (letters, digits, . _ / -)."
  }
}

variable "secret_arn" {
  description = "Existing Secrets Manager secret (ARN) with the .env values; null = create <name>/platform seeded with generated PREFECT_API_AUTH_STRING and POSTGRES_PASSWORD."
  type        = string
  default     = null
  validation {
    condition     = var.secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.secret_arn))
    error_message = "secret_arn must be null or a Secrets Manager secret ARN."
  }
}

variable "secret_kms_key_arn" {
  description = "Customer-managed KMS key of the secret, if it has one (the role then gets kms:Decrypt via Secrets Manager only)."
  type        = string
  default     = null
}

variable "secret_recovery_window_in_days" {
  description = "Recovery window of the created secret (0 = delete at once on destroy)."
  type        = number
  default     = 7
  validation {
    condition     = var.secret_recovery_window_in_days == 0 || (var.secret_recovery_window_in_days >= 7 && var.secret_recovery_window_in_days <= 30)
    error_message = "secret_recovery_window_in_days must be 0 or between 7 and 30."
  }
}

variable "public_hostname" {
  description = "DNS name that points at the Elastic IP, for the HTTPS front door (PUBLIC_HOSTNAME); null = reach the UI through SSM port forwarding."
  type        = string
  default     = null
  validation {
    condition     = var.public_hostname == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.public_hostname))
    error_message = "public_hostname must be a lowercase DNS name such as prefect.example.com."
  }
}

variable "acme_email" {
  description = "E-mail address for the ACME account of the HTTPS front door (ACME_EMAIL); null = none."
  type        = string
  default     = null
  validation {
    condition     = var.acme_email == null || can(regex("^[^@\\s'\"]+@[^@\\s'\"]+\\.[a-z]{2,}$", var.acme_email))
    error_message = "acme_email must be an e-mail address."
  }
}

variable "bootstrap_settings" {
  description = "Further settings of ec2-userdata.sh (e.g. { SWAP_SIZE_MB = \"4096\" }); they win over the ones this stack derives."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.bootstrap_settings : can(regex("^[A-Z_][A-Z0-9_]*$", k))])
    error_message = "bootstrap_settings keys must be environment variable names."
  }
}

# ---- Backups ----
variable "backup_bucket" {
  description = "Existing S3 bucket for backups; null = create <name>-backups-<account id> (encrypted, versioned, private)."
  type        = string
  default     = null
  validation {
    condition     = var.backup_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.backup_bucket))
    error_message = "backup_bucket must be null or a valid S3 bucket name."
  }
}

variable "backup_prefix" {
  description = "The one key prefix the host may write backups under (ends with /)."
  type        = string
  default     = "prefect-platform/"
  validation {
    condition     = can(regex("^[A-Za-z0-9!_.'()-][A-Za-z0-9!_.'()/-]*/$", var.backup_prefix))
    error_message = "backup_prefix must be a non-empty key prefix ending with /, without a leading /."
  }
}

variable "backup_retention_days" {
  description = "Days after which backups in the created bucket expire (0 = keep forever)."
  type        = number
  default     = 35
  validation {
    condition     = var.backup_retention_days >= 0 && floor(var.backup_retention_days) == var.backup_retention_days
    error_message = "backup_retention_days must be a whole number of days, 0 or more."
  }
}

variable "backup_bucket_force_destroy" {
  description = "Whether destroy may delete the created bucket with backups in it (throwaway environments only)."
  type        = bool
  default     = false
}
