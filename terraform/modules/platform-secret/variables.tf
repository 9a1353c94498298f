variable "name" {
  description = "Name of the Secrets Manager secret (e.g. prefect-platform/prod)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.name))
    error_message = "name may hold letters, digits and /_+=.@- only (Secrets Manager's rule), 1-512 characters."
  }
}

variable "description" {
  description = "Description shown in the Secrets Manager console."
  type        = string
  default     = "prefect-platform settings"
}

variable "generated" {
  description = <<-EOT
    Values generated once when the secret is created, by key: each value is a format string whose
    %s is replaced by a fresh random password (letters and digits), e.g. { PREFECT_API_AUTH_STRING =
    "admin:%s" }. The secret holds a JSON object of them, or, with plain_key set, that key's value
    alone. They are written with a write-only argument: never stored in the Terraform state.
  EOT
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.generated : can(regex("^[A-Z_][A-Z0-9_]*$", k)) && strcontains(v, "%s")])
    error_message = "generated: keys must be environment variable names (A-Z, 0-9, _) and every value must contain %s."
  }
}

variable "plain_key" {
  description = "When set, the secret's value is this key's generated value as a plain string (what ECS injects as one environment variable); null = a JSON object."
  type        = string
  default     = null
}

variable "seed_version" {
  description = "Bump to generate and write new values (a manual rotation); values put into the secret by hand are then replaced."
  type        = number
  default     = 1
  validation {
    condition     = var.seed_version >= 1 && floor(var.seed_version) == var.seed_version
    error_message = "seed_version must be a whole number from 1."
  }
}

variable "password_length" {
  description = "Length of each generated password."
  type        = number
  default     = 40
  validation {
    condition     = var.password_length >= 20 && var.password_length <= 128
    error_message = "password_length must be between 20 and 128."
  }
}

variable "kms_key_id" {
  description = "Customer-managed KMS key for the secret; null = the account's aws/secretsmanager key."
  type        = string
  default     = null
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can be restored (0 = delete at once, 7-30 otherwise)."
  type        = number
  default     = 7
  validation {
    condition     = var.recovery_window_in_days == 0 || (var.recovery_window_in_days >= 7 && var.recovery_window_in_days <= 30)
    error_message = "recovery_window_in_days must be 0 or between 7 and 30."
  }
}
