# Four roles, each with only what its holder does:
#   server_execution   ECS starting the server: its logs, the DB password, the API auth secret
#   runtime_execution  ECS starting the worker and flow runs: their logs, the flow-run image, the API auth secret
#   worker_task        the worker's code: register task definitions and run/stop tasks in this cluster only
#   flow_run_task      the flow runs' code: the secrets named in flow_run_secret_arns, nothing else
data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    # Only tasks of this account may use the roles (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---- server_execution ----
resource "aws_iam_role" "server_execution" {
  name               = "${var.name}-server-execution"
  description        = "ECS starting the Prefect server: logs, DB password, API auth secret"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "server_execution" {
  statement {
    sid       = "WriteServerLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this["server"].arn}:*"]
  }
  statement {
    sid       = "ReadServerSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [module.db.master_user_secret_arn, module.api_auth.arn]
  }
}

resource "aws_iam_role_policy" "server_execution" {
  name   = "server-execution"
  role   = aws_iam_role.server_execution.id
  policy = data.aws_iam_policy_document.server_execution.json
}

# ---- runtime_execution (worker and flow runs) ----
resource "aws_iam_role" "runtime_execution" {
  name               = "${var.name}-runtime-execution"
  description        = "ECS starting the worker and flow runs: logs, flow-run image, API auth secret"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "runtime_execution" {
  statement {
    sid     = "WriteRuntimeLogs"
    actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [
      "${aws_cloudwatch_log_group.this["worker"].arn}:*",
      "${aws_cloudwatch_log_group.this["flow-runs"].arn}:*",
    ]
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }
  statement {
    sid       = "PullFlowRunImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.flow_runner.arn]
  }
  statement {
    sid       = "ReadApiAuth"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [module.api_auth.arn]
  }
}

resource "aws_iam_role_policy" "runtime_execution" {
  name   = "runtime-execution"
  role   = aws_iam_role.runtime_execution.id
  policy = data.aws_iam_policy_document.runtime_execution.json
}

# ---- worker_task ----
resource "aws_iam_role" "worker_task" {
  name               = "${var.name}-worker"
  description        = "Prefect ECS worker: run flow-run tasks in the ${var.name} cluster"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "worker_task" {
  statement {
    sid = "TaskDefinitions"
    # No resource-level permissions exist for these.
    actions = [
      "ecs:RegisterTaskDefinition",
      "ecs:DeregisterTaskDefinition",
      "ecs:DescribeTaskDefinition",
      "ecs:ListTaskDefinitions",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "RunFlowRunsInThisClusterOnly"
    actions   = ["ecs:RunTask", "ecs:TagResource"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/*", "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${var.name}/*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "WatchAndStopFlowRuns"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${var.name}/*"]
  }
  statement {
    sid       = "CheckNetworkConfiguration"
    actions   = ["ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"]
    resources = ["*"] # read-only describe calls have no resource-level permissions
  }
  statement {
    sid       = "StreamFlowRunLogs"
    actions   = ["logs:GetLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this["flow-runs"].arn}:*"]
  }
  statement {
    sid       = "PassOnlyTheFlowRunRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.flow_run_task.arn, aws_iam_role.runtime_execution.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "worker_task" {
  name   = "ecs-worker"
  role   = aws_iam_role.worker_task.id
  policy = data.aws_iam_policy_document.worker_task.json
}

# ---- flow_run_task ----
resource "aws_iam_role" "flow_run_task" {
  name               = "${var.name}-flow-run"
  description        = "Prefect flow runs on ECS: only the secrets they are given"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "flow_run_task" {
  count = length(var.flow_run_secret_arns) > 0 ? 1 : 0
  statement {
    sid       = "ReadFlowSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.flow_run_secret_arns
  }
}

resource "aws_iam_role_policy" "flow_run_task" {
  count  = length(var.flow_run_secret_arns) > 0 ? 1 : 0
  name   = "flow-run"
  role   = aws_iam_role.flow_run_task.id
  policy = data.aws_iam_policy_document.flow_run_task[0].json
}
