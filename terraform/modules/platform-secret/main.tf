# A secret seeded once with generated passwords. The passwords come from Secrets Manager's own
# GetRandomPassword through an ephemeral resource and reach the secret through a write-only
# argument, so neither the plan nor the state ever holds them. Values added to the secret later
# (warehouse credentials, ...) are kept: Terraform writes the secret again only when seed_version
# changes.
resource "aws_secretsmanager_secret" "this" {
  name                    = var.name
  description             = var.description
  kms_key_id              = var.kms_key_id
  recovery_window_in_days = var.recovery_window_in_days
}

ephemeral "aws_secretsmanager_random_password" "generated" {
  for_each            = var.generated
  password_length     = var.password_length
  exclude_punctuation = true
}

locals {
  values = { for k, fmt in var.generated : k => format(fmt, ephemeral.aws_secretsmanager_random_password.generated[k].random_password) }
}

resource "aws_secretsmanager_secret_version" "seed" {
  secret_id                = aws_secretsmanager_secret.this.id
  secret_string_wo         = var.plain_key == null ? jsonencode(local.values) : local.values[var.plain_key]
  secret_string_wo_version = var.seed_version

  lifecycle {
    precondition {
      condition     = var.plain_key == null || contains(keys(var.generated), coalesce(var.plain_key, "-"))
      error_message = "plain_key must be one of the keys of generated."
    }
  }
}
