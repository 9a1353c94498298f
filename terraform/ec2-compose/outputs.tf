locals {
  region = data.aws_region.current.name
  ui_url = (
    var.public_hostname != null ? "https://${var.public_hostname}" :
    contains(var.ingress_ports, 4200) ? "http://${module.host.public_ip}:4200" :
    "http://localhost:4200"
  )
}

output "ui_url" {
  description = "URL of the Prefect UI: https://<public_hostname>, http://<elastic ip>:4200 when that port is open, else http://localhost:4200 through ssm_port_forward_command."
  value       = local.ui_url
}

output "instance_id" {
  description = "ID of the host."
  value       = module.host.instance_id
}

output "public_ip" {
  description = "The Elastic IP of the host (point public_hostname's DNS record here)."
  value       = module.host.public_ip
}

output "ssm_session_command" {
  description = "A shell on the host through SSM Session Manager (needs the AWS CLI's session-manager-plugin)."
  value       = "aws ssm start-session --region ${local.region} --target ${module.host.instance_id}"
}

output "ssm_port_forward_command" {
  description = "Forwards localhost:4200 to the host's UI/API port through SSM, for http://localhost:4200 without opening any port."
  value       = "aws ssm start-session --region ${local.region} --target ${module.host.instance_id} --document-name AWS-StartPortForwardingSession --parameters '{\"portNumber\":[\"4200\"],\"localPortNumber\":[\"4200\"]}'"
}

output "secret_arn" {
  description = "The secret the host reads its .env values from (add warehouse credentials here)."
  value       = local.secret_arn
}

output "backup_s3_uri" {
  description = "Where the host may write backups (s3://bucket/prefix/)."
  value       = "s3://${local.backup_bucket}/${var.backup_prefix}"
}

output "role_name" {
  description = "The host's IAM role."
  value       = module.host.role_name
}

output "bootstrap_log_command" {
  description = "Shows the end of the bootstrap log (the UI URL is in its last lines) without logging in."
  value       = "aws ec2 get-console-output --region ${local.region} --instance-id ${module.host.instance_id} --latest --output text | tail -n 30"
}
