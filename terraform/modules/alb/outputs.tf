output "dns_name" {
  description = "DNS name of the load balancer (point your own name at it with a CNAME or alias record)."
  value       = aws_lb.this.dns_name
}

output "url" {
  description = "Base URL of the load balancer: https:// with a certificate, http:// otherwise."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "security_group_id" {
  description = "Security group of the load balancer (targets admit traffic from it)."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "ARN of the target group (an ECS service registers its tasks here)."
  value       = aws_lb_target_group.this.arn
}

output "listener_arn" {
  description = "ARN of the listener that forwards to the targets (HTTPS, or HTTP without a certificate)."
  value       = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http_forward[0].arn
}
