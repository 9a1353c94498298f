"""The ECS work pool: its template (services/work_pools/ecs.json), its registration by the init on a
real Prefect server, and prefect-aws's ECS worker submitting a flow run of it to moto's ECS.

moto accepts RegisterTaskDefinition and RunTask but runs nothing, so the end-to-end check stops at
what the worker submitted: the task definition's family, image, roles, logs and secrets, and the
run's cluster, network configuration and environment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentCreate
from prefect_aws.workers.ecs_worker import ECSWorker

from services.init import ecs_pool
from services.init.work_pool import upsert_work_pool
from services.work_pools import HEARTBEAT_SECONDS, TEMPLATES_DIR, TemplateError

ECS = {
    "ECS_WORK_POOL_NAME": "ecs-pool",
    "ECS_REGION": "us-east-1",
    "ECS_CLUSTER": "arn:aws:ecs:us-east-1:123456789012:cluster/prefect-demo",
    "ECS_FLOW_RUN_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/prefect-demo/flow-runner:0.1.0",
    "ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/prefect-demo-flow-run",
    "ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/prefect-demo-runtime-execution",
    "ECS_VPC_ID": "vpc-0123456789abcdef0",
    "ECS_SUBNETS": "subnet-0a,subnet-0b",
    "ECS_SECURITY_GROUPS": "sg-0c",
    "ECS_ASSIGN_PUBLIC_IP": "ENABLED",
    "ECS_CPU": "1024",
    "ECS_MEMORY": "2048",
    "ECS_LOG_GROUP": "/ecs/prefect-demo/flow-runs",
    "ECS_PREFECT_API_URL": "http://server.prefect-demo.internal:4200/api",
    "ECS_API_AUTH_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:demo/api-auth-AbCdEf",
}


def defaults(template: dict[str, Any]) -> dict[str, Any]:
    return {k: v.get("default") for k, v in template["variables"]["properties"].items()}


def test_template_carries_the_stack_values_with_their_json_types() -> None:
    template = ecs_pool.ecs_job_template(ecs_pool.ecs_values(ECS))
    values = defaults(template)
    assert values["cluster"] == ECS["ECS_CLUSTER"] and values["launch_type"] == "FARGATE"
    assert values["image"] == ECS["ECS_FLOW_RUN_IMAGE"]
    assert values["cpu"] == 1024 and values["memory"] == 2048
    assert values["network_configuration"] == {
        "subnets": ["subnet-0a", "subnet-0b"],
        "securityGroups": ["sg-0c"],
        "assignPublicIp": "ENABLED",
    }
    assert values["env"] == {
        "PREFECT_API_URL": ECS["ECS_PREFECT_API_URL"],
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    }
    assert values["cloudwatch_logs_options"]["awslogs-group"] == ECS["ECS_LOG_GROUP"]
    assert values["prefect_api_auth_string_secret_arn"] == ECS["ECS_API_AUTH_SECRET_ARN"]
    assert values["family"] == "prefect-flow-run-ecs-pool" and values["match_latest_revision_in_family"]
    assert "${" not in json.dumps(template)


def test_template_file_matches_the_installed_ecs_worker() -> None:
    """An upgrade of prefect-aws that changes its job configuration must be looked at."""
    ours = json.loads((TEMPLATES_DIR / "ecs.json").read_text())
    upstream = ECSWorker.get_default_base_job_template()
    assert ours["job_configuration"] == upstream["job_configuration"]
    assert set(ours["variables"]["properties"]) == set(upstream["variables"]["properties"])


def test_cloud_without_an_auth_secret_leaves_it_null() -> None:
    template = ecs_pool.ecs_job_template(ecs_pool.ecs_values({**ECS, "ECS_API_AUTH_SECRET_ARN": ""}))
    assert defaults(template)["prefect_api_auth_string_secret_arn"] is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ECS_CLUSTER", "", "ECS_CLUSTER is empty"),
        ("ECS_CPU", "1 vCPU", "ECS_CPU must be a whole number"),
        ("ECS_ASSIGN_PUBLIC_IP", "yes", "ENABLED or DISABLED"),
        ("ECS_SUBNETS", "subnet-0a, subnet-0b", "comma-separated ids without spaces"),
    ],
)
def test_bad_settings_are_named(key: str, value: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        ecs_pool.ecs_values({**ECS, key: value})


def test_not_configured_without_a_pool_name() -> None:
    assert not ecs_pool.configured({**ECS, "ECS_WORK_POOL_NAME": " "})
    assert ecs_pool.configured(ECS)


# ---- against a real Prefect server, and moto's ECS ----
@pytest.fixture
def ecs_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in ECS.items():
        monkeypatch.setenv(key, value)
    return ECS


def test_init_registers_the_ecs_pool_and_keeps_it_as_code(prefect_server: None, ecs_env: dict) -> None:
    with get_client(sync_client=True) as client:
        ecs_pool.ensure_ecs_pool(client)
        pool = client.read_work_pool("ecs-pool")
        assert pool.type == "ecs"
        assert pool.base_job_template == ecs_pool.ecs_job_template(ecs_pool.ecs_values())
        # An edit in the UI is undone by the next init.
        edited = json.loads(json.dumps(pool.base_job_template))
        edited["variables"]["properties"]["image"]["default"] = "someone/else:latest"
        upsert_work_pool(client, "ecs-pool", "ecs", edited)
        ecs_pool.ensure_ecs_pool(client)
        assert (
            defaults(client.read_work_pool("ecs-pool").base_job_template)["image"]
            == ECS["ECS_FLOW_RUN_IMAGE"]
        )


@pytest.fixture
def moto_ecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto on loopback with the network, cluster and log group the ecs-rds stack would create."""
    import boto3
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.server import ThreadedMotoServer

    # moto 5.2.5 sums container-level memory even for Fargate, where AWS takes the task's memory
    # (a container without `memory` is valid there, and is what prefect-aws registers): count 0.
    requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def fargate_aware(task_definition: Any) -> Any:
        stored = task_definition.container_definitions
        task_definition.container_definitions = [{"memory": 0, **c} for c in stored]
        try:
            return requirements(task_definition)
        finally:
            task_definition.container_definitions = stored

    monkeypatch.setattr(
        EC2ContainerServiceBackend, "_calculate_task_resource_requirements", staticmethod(fargate_aware)
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as terraform/modules/network
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.43.{i}.0/24")["Subnet"]["SubnetId"] for i in (0, 1)
    ]
    group = ec2.create_security_group(GroupName="runtime", Description="runtime", VpcId=vpc)["GroupId"]
    cluster = boto3.client("ecs").create_cluster(clusterName="prefect-demo")["cluster"]["clusterArn"]
    boto3.client("logs").create_log_group(logGroupName=ECS["ECS_LOG_GROUP"])
    values = {
        **ECS,
        "ECS_CLUSTER": cluster,
        "ECS_VPC_ID": vpc,
        "ECS_SUBNETS": ",".join(subnets),
        "ECS_SECURITY_GROUPS": group,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    try:
        yield values
    finally:
        server.stop()


def test_ecs_worker_submits_a_flow_run_to_ecs_as_the_pool_says(
    prefect_server: None, moto_ecs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    pool_name = "ecs-moto"
    monkeypatch.setenv("ECS_WORK_POOL_NAME", pool_name)
    with get_client(sync_client=True) as client:
        ecs_pool.ensure_ecs_pool(client)
        flow_id = client.create_flow_from_name("etl")
        deployment_id = client.create_deployment(
            **DeploymentCreate(
                name="daily", flow_id=flow_id, work_pool_name=pool_name, entrypoint="elt.py:elt"
            ).model_dump(exclude_unset=True)
        )
        run = client.create_flow_run_from_deployment(deployment_id)

    auth = "admin:never-in-a-task-definition-0123456789"

    async def submit() -> None:
        # The worker holds the API auth string, as it would from its secret; the pool says ECS
        # injects it from Secrets Manager, so the worker must not pass it on in clear.
        with temporary_settings({PREFECT_API_AUTH_STRING: auth}):
            async with ECSWorker(work_pool_name=pool_name, prefetch_seconds=60) as worker:
                await worker.get_and_submit_flow_runs()

    anyio.run(submit)

    ecs = boto3.client("ecs")
    families = ecs.list_task_definition_families(familyPrefix="prefect-flow-run-")["families"]
    assert families == [f"prefect-flow-run-{pool_name}"]
    definition = ecs.describe_task_definition(taskDefinition=families[0])["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    assert container["image"] == moto_ecs["ECS_FLOW_RUN_IMAGE"]
    assert definition["executionRoleArn"] == moto_ecs["ECS_EXECUTION_ROLE_ARN"]
    assert definition["requiresCompatibilities"] == ["FARGATE"] and definition["networkMode"] == "awsvpc"
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
        "PREFECT_API_AUTH_STRING": moto_ecs["ECS_API_AUTH_SECRET_ARN"]
    }
    assert container["logConfiguration"]["options"]["awslogs-group"] == moto_ecs["ECS_LOG_GROUP"]

    (task_arn,) = ecs.list_tasks(cluster=moto_ecs["ECS_CLUSTER"])["taskArns"]
    (task,) = ecs.describe_tasks(cluster=moto_ecs["ECS_CLUSTER"], tasks=[task_arn])["tasks"]
    assert task["taskDefinitionArn"] == definition["taskDefinitionArn"]
    assert task["overrides"]["taskRoleArn"] == moto_ecs["ECS_TASK_ROLE_ARN"]
    (override,) = task["overrides"]["containerOverrides"]
    environment = {e["name"]: e["value"] for e in override["environment"]}
    assert environment["PREFECT_API_URL"] == moto_ecs["ECS_PREFECT_API_URL"]
    assert environment["PREFECT__FLOW_RUN_ID"] == str(run.id)
    assert "PREFECT_API_AUTH_STRING" not in environment
    assert auth not in json.dumps([definition, task], default=str)
    # The task's network interface is in the pool's subnets (moto attaches the first one).
    attachments = json.dumps(task.get("attachments", []))
    assert moto_ecs["ECS_SUBNETS"].split(",")[0] in attachments, attachments
