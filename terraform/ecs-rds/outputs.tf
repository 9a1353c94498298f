output "ui_url" {
  description = "URL of the Prefect UI (sign in with the user:password held by api_auth_secret_arn)."
  value       = local.ui_url
}

output "prefect_api_url" {
  description = "PREFECT_API_URL for the worker and flow runs inside the VPC (private DNS, no load balancer)."
  value       = local.internal_api_url
}

output "public_api_url" {
  description = "PREFECT_API_URL from outside the VPC (CLI, CI: prefect deploy), through the load balancer."
  value       = "${local.ui_url}/api"
}

output "api_auth_secret_arn" {
  description = "Secret holding PREFECT_API_AUTH_STRING (user:password); read it with aws secretsmanager get-secret-value."
  value       = module.api_auth.arn
}

output "region" {
  description = "Region of the stack."
  value       = local.region
}

output "cluster_arn" {
  description = "ECS cluster of the server, the worker and the flow runs."
  value       = aws_ecs_cluster.this.arn
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "work_pool_name" {
  description = "ECS work pool the worker polls."
  value       = var.work_pool_name
}

output "flow_run_task_role_arn" {
  description = "Task role of the flow runs (the pool's task_role_arn)."
  value       = aws_iam_role.flow_run_task.arn
}

output "flow_run_execution_role_arn" {
  description = "Execution role of the flow runs (the pool's execution_role_arn): pulls the image, writes logs, reads the API auth secret."
  value       = aws_iam_role.runtime_execution.arn
}

output "vpc_id" {
  description = "VPC of the stack."
  value       = local.vpc_id
}

output "flow_run_subnet_ids" {
  description = "Subnets of the flow-run tasks."
  value       = local.task_subnet_ids
}

output "flow_run_security_group_ids" {
  description = "Security groups of the flow-run tasks (no inbound; reach the server by private DNS)."
  value       = [aws_security_group.runtime.id]
}

output "flow_run_log_group" {
  description = "CloudWatch log group of the flow runs."
  value       = aws_cloudwatch_log_group.this["flow-runs"].name
}

output "ecr_repository_url" {
  description = "ECR repository of the flow-run image (docker push target)."
  value       = aws_ecr_repository.flow_runner.repository_url
}

output "flow_run_image" {
  description = "Flow-run image URI (repository:tag) for the pool's image."
  value       = local.flow_run_image
}

output "ecr_login_command" {
  description = "Logs Docker in to the ECR registry (before docker push)."
  value       = "aws ecr get-login-password --region ${local.region} | docker login --username AWS --password-stdin ${split("/", aws_ecr_repository.flow_runner.repository_url)[0]}"
}

output "server_service_name" {
  description = "ECS service of the Prefect server."
  value       = module.server.service_name
}

output "worker_service_name" {
  description = "ECS service of the ECS worker."
  value       = module.worker.service_name
}

output "db_address" {
  description = "Host name of the RDS database (private)."
  value       = module.db.address
}

output "db_secret_arn" {
  description = "RDS-managed secret with the database's master user and password (for pg_restore from inside the VPC)."
  value       = module.db.master_user_secret_arn
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer (point public_hostname here)."
  value       = module.alb.dns_name
}

output "ecs_pool_settings" {
  description = "The ECS_* settings of .env (see .env.example) for prefect-init to register the ECS work pool with services/work_pools/ecs.json."
  value = {
    ECS_WORK_POOL_NAME      = var.work_pool_name
    ECS_REGION              = local.region
    ECS_CLUSTER             = aws_ecs_cluster.this.arn
    ECS_FLOW_RUN_IMAGE      = local.flow_run_image
    ECS_TASK_ROLE_ARN       = aws_iam_role.flow_run_task.arn
    ECS_EXECUTION_ROLE_ARN  = aws_iam_role.runtime_execution.arn
    ECS_VPC_ID              = local.vpc_id
    ECS_SUBNETS             = join(",", local.task_subnet_ids)
    ECS_SECURITY_GROUPS     = aws_security_group.runtime.id
    ECS_ASSIGN_PUBLIC_IP    = var.assign_public_ip ? "ENABLED" : "DISABLED"
    ECS_CPU                 = tostring(var.flow_run_cpu)
    ECS_MEMORY              = tostring(var.flow_run_memory)
    ECS_LOG_GROUP           = aws_cloudwatch_log_group.this["flow-runs"].name
    ECS_PREFECT_API_URL     = local.internal_api_url
    ECS_API_AUTH_SECRET_ARN = module.api_auth.arn
  }
}
