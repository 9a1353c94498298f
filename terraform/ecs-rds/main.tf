# The managed layout: the Prefect server as a Fargate service behind an ALB, its database on RDS,
# an ECS worker as a second Fargate service that starts every flow run as its own Fargate task
# (image from the ECR repository made here). Roles are in iam.tf.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  create_vpc = var.vpc_id == null

  vpc_id             = local.create_vpc ? module.network[0].vpc_id : var.vpc_id
  public_subnet_ids  = local.create_vpc ? module.network[0].public_subnet_ids : var.public_subnet_ids
  private_subnet_ids = local.create_vpc ? module.network[0].private_subnet_ids : var.private_subnet_ids
  task_subnet_ids    = length(var.task_subnet_ids) > 0 ? var.task_subnet_ids : local.public_subnet_ids

  # Inside the VPC the worker and the flow runs reach the server by private DNS (Cloud Map), not
  # through the load balancer: the ALB may admit only the team's addresses.
  namespace        = "${var.name}.internal"
  internal_api_url = "http://server.${local.namespace}:4200/api"
  ui_url = (
    var.public_hostname != null ? "${var.certificate_arn != null ? "https" : "http"}://${var.public_hostname}" : module.alb.url
  )
  flow_run_image = "${aws_ecr_repository.flow_runner.repository_url}:${var.flow_run_image_tag}"
}

check "network_inputs" {
  assert {
    condition     = var.vpc_id == null || (length(var.public_subnet_ids) >= 2 && length(var.private_subnet_ids) >= 2)
    error_message = "With vpc_id, give two public_subnet_ids and two private_subnet_ids at least."
  }
}

module "network" {
  source          = "../modules/network"
  count           = local.create_vpc ? 1 : 0
  name            = var.name
  cidr_block      = var.vpc_cidr
  az_count        = 2
  private_subnets = true
}

# ---- Images and cluster ----
resource "aws_ecr_repository" "flow_runner" {
  name                 = "${var.name}/flow-runner"
  image_tag_mutability = "MUTABLE"
  force_delete         = var.ecr_force_delete
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "AES256"
  }
}

resource "aws_ecr_lifecycle_policy" "flow_runner" {
  repository = aws_ecr_repository.flow_runner.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the 20 newest images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 20 }
      action       = { type = "expire" }
    }]
  })
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]
}

resource "aws_cloudwatch_log_group" "this" {
  for_each          = toset(["server", "worker", "flow-runs"])
  name              = "/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
}

# ---- Network access ----
resource "aws_security_group" "server" {
  name        = "${var.name}-server"
  description = "${var.name}: Prefect server tasks, port 4200 from the ALB and the runtime tasks"
  vpc_id      = local.vpc_id
  tags        = { Name = "${var.name}-server" }
}

resource "aws_vpc_security_group_ingress_rule" "server_from_alb" {
  security_group_id            = aws_security_group.server.id
  description                  = "UI/API from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 4200
  to_port                      = 4200
  referenced_security_group_id = module.alb.security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "server_from_runtime" {
  security_group_id            = aws_security_group.server.id
  description                  = "API from the worker and flow runs"
  ip_protocol                  = "tcp"
  from_port                    = 4200
  to_port                      = 4200
  referenced_security_group_id = aws_security_group.runtime.id
}

resource "aws_vpc_security_group_egress_rule" "server_all" {
  security_group_id = aws_security_group.server.id
  description       = "image pulls, Secrets Manager, CloudWatch, the database"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# The worker and every flow run: nothing comes in; out to the server, AWS APIs, sources, warehouses.
resource "aws_security_group" "runtime" {
  name        = "${var.name}-runtime"
  description = "${var.name}: ECS worker and flow-run tasks, no inbound traffic"
  vpc_id      = local.vpc_id
  tags        = { Name = "${var.name}-runtime" }
}

resource "aws_vpc_security_group_egress_rule" "runtime_all" {
  security_group_id = aws_security_group.runtime.id
  description       = "all outbound"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

module "alb" {
  source          = "../modules/alb"
  name            = var.name
  vpc_id          = local.vpc_id
  subnet_ids      = local.public_subnet_ids
  ingress_cidrs   = var.ingress_cidrs
  certificate_arn = var.certificate_arn
}

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = local.namespace
  description = "${var.name}: private names of the Prefect server"
  vpc         = local.vpc_id
}

resource "aws_service_discovery_service" "server" {
  name = "server"
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

# ---- Database and secrets ----
module "db" {
  source                    = "../modules/postgres-rds"
  name                      = var.name
  vpc_id                    = local.vpc_id
  subnet_ids                = local.private_subnet_ids
  client_security_group_ids = [aws_security_group.server.id]
  instance_class            = var.db_instance_class
  allocated_storage_gb      = var.db_allocated_storage_gb
  multi_az                  = var.db_multi_az
  backup_retention_days     = var.db_backup_retention_days
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
}

# Basic auth of the UI/API (user:password), generated once; the server checks it, the worker and
# flow runs send it. ECS injects it at task start: it never appears in a task definition.
module "api_auth" {
  source                  = "../modules/platform-secret"
  name                    = "${var.name}/api-auth"
  description             = "${var.name}: PREFECT_API_AUTH_STRING (user:password) of the Prefect server"
  recovery_window_in_days = var.secret_recovery_window_in_days
  generated               = { PREFECT_API_AUTH_STRING = "admin:%s" }
  plain_key               = "PREFECT_API_AUTH_STRING"
}

# ---- Services ----
module "server" {
  source             = "../modules/fargate-service"
  name               = "${var.name}-server"
  cluster_arn        = aws_ecs_cluster.this.arn
  image              = var.server_image
  command            = ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
  cpu                = var.server_cpu
  memory             = var.server_memory
  execution_role_arn = aws_iam_role.server_execution.arn
  task_role_arn      = null # the server calls no AWS API
  log_group_name     = aws_cloudwatch_log_group.this["server"].name
  region             = local.region
  subnet_ids         = local.task_subnet_ids
  security_group_ids = [aws_security_group.server.id]
  assign_public_ip   = var.assign_public_ip
  container_port     = 4200
  target_group_arn   = module.alb.target_group_arn
  # Migrations run at server start (Prefect's default): a first start on an empty or restored
  # database takes minutes, which the health check must tolerate.
  health_check_grace_period_seconds = 600
  service_registry_arn              = aws_service_discovery_service.server.arn
  environment = {
    PREFECT_SERVER_DATABASE_DRIVER             = "postgresql+asyncpg"
    PREFECT_SERVER_DATABASE_HOST               = module.db.address
    PREFECT_SERVER_DATABASE_PORT               = tostring(module.db.port)
    PREFECT_SERVER_DATABASE_NAME               = module.db.db_name
    PREFECT_SERVER_DATABASE_USER               = module.db.username
    PREFECT_UI_API_URL                         = "/api"
    PREFECT_SERVER_ANALYTICS_ENABLED           = "false"
    PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT = "false"
    # Task runs recorded in batches, as docker-compose.yml's server does (why: there).
    PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE     = "100"
    PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL = "1"
  }
  secrets = {
    PREFECT_SERVER_DATABASE_PASSWORD = "${module.db.master_user_secret_arn}:password::"
    PREFECT_SERVER_API_AUTH_STRING   = module.api_auth.arn
  }
  depends_on = [aws_iam_role_policy.server_execution, module.alb]
}

module "worker" {
  source             = "../modules/fargate-service"
  name               = "${var.name}-worker"
  cluster_arn        = aws_ecs_cluster.this.arn
  image              = var.worker_image
  command            = ["prefect", "worker", "start", "--pool", var.work_pool_name, "--type", "ecs", "--limit", tostring(var.worker_concurrency)]
  cpu                = var.worker_cpu
  memory             = var.worker_memory
  execution_role_arn = aws_iam_role.runtime_execution.arn
  task_role_arn      = aws_iam_role.worker_task.arn
  log_group_name     = aws_cloudwatch_log_group.this["worker"].name
  region             = local.region
  subnet_ids         = local.task_subnet_ids
  security_group_ids = [aws_security_group.runtime.id]
  assign_public_ip   = var.assign_public_ip
  environment = merge(
    {
      PREFECT_API_URL    = local.internal_api_url
      AWS_DEFAULT_REGION = local.region
    },
    var.worker_extra_pip_packages == "" ? {} : { EXTRA_PIP_PACKAGES = var.worker_extra_pip_packages },
  )
  secrets    = { PREFECT_API_AUTH_STRING = module.api_auth.arn }
  depends_on = [aws_iam_role_policy.runtime_execution, aws_iam_role_policy.worker_task, module.server]
}
