"""The ECS work pool: services/work_pools/ecs.json rendered with the ECS_* settings, when configured.

The init registers it beside the Docker pool when ECS_WORK_POOL_NAME is set (values from the
ecs-rds stack's `ecs_pool_settings` output). Deployments go to it with DEPLOY_WORK_POOL_NAME; an
ECS worker (prefect-aws, `prefect worker start --type ecs`) runs each flow run as a Fargate task.
The template holds ARNs and names only: the API auth string reaches the tasks from Secrets Manager
(ECS injects ECS_API_AUTH_SECRET_ARN's value at task start), never through the template.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from services.init.work_pool import upsert_work_pool
from services.work_pools import HEARTBEAT_SECONDS, TemplateError, job_template

POOL_TYPE = "ecs"
# Settings the template needs; ECS_API_AUTH_SECRET_ARN may be empty (Prefect Cloud: the worker's
# PREFECT_API_KEY is passed on instead, or set prefect_api_key_secret_arn on the pool).
REQUIRED = (
    "ECS_WORK_POOL_NAME",
    "ECS_REGION",
    "ECS_CLUSTER",
    "ECS_FLOW_RUN_IMAGE",
    "ECS_TASK_ROLE_ARN",
    "ECS_EXECUTION_ROLE_ARN",
    "ECS_VPC_ID",
    "ECS_SUBNETS",
    "ECS_SECURITY_GROUPS",
    "ECS_ASSIGN_PUBLIC_IP",
    "ECS_CPU",
    "ECS_MEMORY",
    "ECS_LOG_GROUP",
    "ECS_PREFECT_API_URL",
)
OPTIONAL = ("ECS_API_AUTH_SECRET_ARN",)
SETTINGS = REQUIRED + OPTIONAL
LIST_SETTINGS = ("ECS_SUBNETS", "ECS_SECURITY_GROUPS")


def configured(environ: dict[str, str] | None = None) -> bool:
    return bool((environ if environ is not None else os.environ).get("ECS_WORK_POOL_NAME", "").strip())


def ecs_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ECS_* settings, checked: every required one present, numbers and lists well formed."""
    env = environ if environ is not None else os.environ
    values = {name: env.get(name, "").strip() for name in SETTINGS}
    if missing := [name for name in REQUIRED if not values[name]]:
        raise TemplateError(
            f"ECS_WORK_POOL_NAME is set but {', '.join(missing)} is empty; fill them from "
            "`terraform -chdir=terraform/ecs-rds output -json ecs_pool_settings` (see .env.example)"
        )
    for name in ("ECS_CPU", "ECS_MEMORY"):
        if not values[name].isdigit():
            raise TemplateError(f"{name} must be a whole number (CPU units or MiB), got {values[name]!r}")
    if values["ECS_ASSIGN_PUBLIC_IP"] not in ("ENABLED", "DISABLED"):
        raise TemplateError("ECS_ASSIGN_PUBLIC_IP must be ENABLED or DISABLED")
    for name in LIST_SETTINGS:
        if any(" " in item or not item for item in values[name].split(",")):
            raise TemplateError(f"{name} must be comma-separated ids without spaces, got {values[name]!r}")
    values["HEARTBEAT_SECONDS"] = str(HEARTBEAT_SECONDS)
    return values


def ecs_job_template(values: dict[str, str]) -> dict[str, Any]:
    """The rendered template, with numbers, lists and empty ARNs given their JSON types."""
    template = job_template(POOL_TYPE, values)
    properties = template["variables"]["properties"]
    for name in ("cpu", "memory"):
        properties[name]["default"] = int(properties[name]["default"])
    network = properties["network_configuration"]["default"]
    network["subnets"] = values["ECS_SUBNETS"].split(",")
    network["securityGroups"] = values["ECS_SECURITY_GROUPS"].split(",")
    auth = properties["prefect_api_auth_string_secret_arn"]
    auth["default"] = auth["default"] or None
    return template


def ensure_ecs_pool(client: Any) -> None:
    """Registers the ECS pool when ECS_WORK_POOL_NAME is set; a wrong setting stops the init."""
    if not configured():
        return
    try:
        values = ecs_values()
    except TemplateError as exc:
        sys.exit(f"prefect-init: {exc}")
    upsert_work_pool(client, values["ECS_WORK_POOL_NAME"], POOL_TYPE, ecs_job_template(values))
