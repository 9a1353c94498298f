output "instance_id" {
  description = "ID of the host."
  value       = aws_instance.host.id
}

output "public_ip" {
  description = "The host's public address (the Elastic IP when there is one)."
  value       = var.elastic_ip ? aws_eip.host[0].public_ip : aws_instance.host.public_ip
}

output "private_ip" {
  description = "The host's private address."
  value       = aws_instance.host.private_ip
}

output "security_group_id" {
  description = "Security group of the host."
  value       = aws_security_group.host.id
}

output "role_name" {
  description = "Name of the host's IAM role."
  value       = aws_iam_role.host.name
}

output "role_arn" {
  description = "ARN of the host's IAM role."
  value       = aws_iam_role.host.arn
}

output "instance_profile_name" {
  description = "Name of the host's instance profile."
  value       = aws_iam_instance_profile.host.name
}

output "user_data" {
  description = "The rendered user data (settings + ec2-userdata.sh); it holds no secret."
  value       = local.user_data
}
