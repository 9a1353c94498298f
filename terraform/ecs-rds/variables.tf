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
  description = "Name of the stack: prefix of every resource (short: load balancer names are limited to 32 characters)."
  type        = string
  default     = "prefect-platform"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name: 3-24 characters, lowercase letters, digits and single hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# ---- Network ----
variable "vpc_id" {
  description = "Existing VPC; null = create one with two public and two private subnets (no NAT gateway)."
  type        = string
  default     = null
  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be null or look like vpc-0123456789abcdef0."
  }
}

variable "public_subnet_ids" {
  description = "With vpc_id: public subnets (two AZs at least) for the load balancer and, with assign_public_ip, the tasks."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "public_subnet_ids must be subnet ids."
  }
}

variable "private_subnet_ids" {
  description = "With vpc_id: private subnets (two AZs at least) for the database."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "private_subnet_ids must be subnet ids."
  }
}

variable "task_subnet_ids" {
  description = "With vpc_id: subnets of the Fargate tasks (server, worker, flow runs); empty = public_subnet_ids. Private subnets need a NAT gateway or VPC endpoints, and assign_public_ip = false."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for s in var.task_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "task_subnet_ids must be subnet ids."
  }
}

variable "assign_public_ip" {
  description = "Whether Fargate tasks get a public IPv4 address (needed in public subnets to pull images and reach APIs; no inbound traffic is allowed by their security groups)."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created when vpc_id is null (/16 to /20)."
  type        = string
  default     = "10.43.0.0/16"
  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("^[0-9.]+/(1[6-9]|20)$", var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR from /16 to /20."
  }
}

# ---- Front door ----
variable "ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach the load balancer (UI and API)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.ingress_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))])
    error_message = "ingress_cidrs must be IPv4 CIDRs such as 203.0.113.0/24."
  }
}

variable "certificate_arn" {
  description = "ACM certificate ARN: HTTPS on 443 (HTTP redirects); null = plain HTTP on 80 (the basic-auth password then crosses the network in clear)."
  type        = string
  default     = null
  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be null or an ACM certificate ARN."
  }
}

variable "public_hostname" {
  description = "DNS name of the certificate, pointed at the load balancer (CNAME/alias; not created here); null = the load balancer's own name."
  type        = string
  default     = null
  validation {
    condition     = var.public_hostname == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.public_hostname))
    error_message = "public_hostname must be a lowercase DNS name such as prefect.example.com."
  }
}

# ---- Prefect server and worker ----
variable "server_image" {
  description = "Image of the Prefect server (Prefect's official image at the project's Prefect version, or the project's platform image pushed to ECR)."
  type        = string
  default     = "prefecthq/prefect:3.8.8-python3.11"
  validation {
    condition     = can(regex("^[a-z0-9][^\\s]*[:@][^\\s]+$", var.server_image))
    error_message = "server_image must be an image reference with a tag or digest."
  }
}

variable "worker_image" {
  description = "Image of the ECS worker; it needs prefect-aws (see worker_extra_pip_packages)."
  type        = string
  default     = "prefecthq/prefect:3.8.8-python3.11"
  validation {
    condition     = can(regex("^[a-z0-9][^\\s]*[:@][^\\s]+$", var.worker_image))
    error_message = "worker_image must be an image reference with a tag or digest."
  }
}

variable "worker_extra_pip_packages" {
  description = "EXTRA_PIP_PACKAGES of Prefect's official image, installed at worker start; empty when worker_image already has prefect-aws."
  type        = string
  default     = "prefect-aws==0.7.12"
}

variable "server_cpu" {
  description = "CPU units of the server task (512 = 0.5 vCPU)."
  type        = number
  default     = 512
}

variable "server_memory" {
  description = "Memory (MiB) of the server task."
  type        = number
  default     = 1024
}

variable "worker_cpu" {
  description = "CPU units of the worker task (256 = 0.25 vCPU)."
  type        = number
  default     = 256
}

variable "worker_memory" {
  description = "Memory (MiB) of the worker task."
  type        = number
  default     = 512
}

variable "work_pool_name" {
  description = "Name of the ECS work pool the worker polls; prefect-init registers it with services/work_pools/ecs.json from the ecs_pool_settings output."
  type        = string
  default     = "ecs-pool"
  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}$", var.work_pool_name))
    error_message = "work_pool_name must hold letters, digits, _ and - only."
  }
}

variable "worker_concurrency" {
  description = "Flow runs the worker starts at once (each is its own Fargate task)."
  type        = number
  default     = 4
  validation {
    condition     = var.worker_concurrency >= 1 && var.worker_concurrency <= 100
    error_message = "worker_concurrency must be between 1 and 100."
  }
}

variable "flow_run_cpu" {
  description = "CPU units of each flow-run task (for the work pool's base job template)."
  type        = number
  default     = 1024
  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.flow_run_cpu)
    error_message = "flow_run_cpu must be a Fargate CPU size."
  }
}

variable "flow_run_memory" {
  description = "Memory (MiB) of each flow-run task (for the work pool's base job template)."
  type        = number
  default     = 2048
  validation {
    condition     = var.flow_run_memory >= 512 && var.flow_run_memory <= 122880
    error_message = "flow_run_memory must be between 512 and 122880 MiB."
  }
}

variable "flow_run_image_tag" {
  description = "Tag of the flow-run image in the ECR repository (what the push command tags)."
  type        = string
  default     = "0.1.0"
  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.flow_run_image_tag))
    error_message = "flow_run_image_tag must be a valid image tag."
  }
}

variable "flow_run_secret_arns" {
  description = "Secrets Manager secrets the flow runs' task role may read (e.g. the AwsSecret block's secret)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for a in var.flow_run_secret_arns : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", a))])
    error_message = "flow_run_secret_arns must be Secrets Manager secret ARNs."
  }
}

variable "ecr_force_delete" {
  description = "Whether destroy may delete the ECR repository with images in it (throwaway environments only)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the server's, worker's and flow runs' logs."
  type        = number
  default     = 30
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "container_insights" {
  description = "Whether to turn on CloudWatch Container Insights for the cluster (extra CloudWatch cost)."
  type        = bool
  default     = false
}

variable "secret_recovery_window_in_days" {
  description = "Recovery window of the API auth secret (0 = delete at once on destroy)."
  type        = number
  default     = 7
  validation {
    condition     = var.secret_recovery_window_in_days == 0 || (var.secret_recovery_window_in_days >= 7 && var.secret_recovery_window_in_days <= 30)
    error_message = "secret_recovery_window_in_days must be 0 or between 7 and 30."
  }
}

# ---- Database ----
variable "db_instance_class" {
  description = "RDS instance class of Prefect's database."
  type        = string
  default     = "db.t4g.micro"
  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.db_instance_class))
    error_message = "db_instance_class must look like db.t4g.micro."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial gp3 storage of the database in GiB."
  type        = number
  default     = 20
  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 65536
    error_message = "db_allocated_storage_gb must be between 20 and 65536."
  }
}

variable "db_multi_az" {
  description = "Whether the database keeps a standby in a second AZ (doubles its cost)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups."
  type        = number
  default     = 7
  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_deletion_protection" {
  description = "Whether the database refuses deletion (set false, apply, then destroy)."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Whether destroy skips the database's final snapshot (throwaway environments only)."
  type        = bool
  default     = false
}
