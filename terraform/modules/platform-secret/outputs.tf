output "arn" {
  description = "ARN of the secret."
  value       = aws_secretsmanager_secret.this.arn
}

output "name" {
  description = "Name of the secret."
  value       = aws_secretsmanager_secret.this.name
}

output "kms_key_id" {
  description = "KMS key of the secret (null = aws/secretsmanager)."
  value       = var.kms_key_id
}
