"""`terraform apply` and `destroy` of both stacks against moto on loopback, checked through boto3.

Each stack is applied once per module into a fresh moto (moto keeps a deleted secret's name, so
two applies into one moto collide); the tests read what was created, and the last test of each
stack destroys it and checks that nothing is left. The provider's endpoints point at moto through
a test-only override file: the stacks and modules are applied exactly as a user would.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.conftest import (
    REPO,
    Terraform,
    boto3_client,
    copy_stack,
    moto_server,
    outputs,
    write_moto_override,
)

pytestmark = pytest.mark.terraform


@dataclass
class Applied:
    """A stack applied into its own moto: its outputs, and boto3 clients on the same moto."""

    terraform: Terraform
    stack_dir: Path
    endpoint: str
    outputs: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    destroyed: bool = False

    def aws(self, service: str) -> Any:
        return boto3_client(service, self.endpoint)

    def state_text(self) -> str:
        return (self.stack_dir / "terraform.tfstate").read_text()

    def destroy(self) -> None:
        started = time.monotonic()
        self.terraform.check(
            self.stack_dir, "destroy", "-auto-approve", "-var-file=example.tfvars", timeout=900
        )
        self.seconds["destroy"] = time.monotonic() - started
        self.destroyed = True


@contextmanager
def applied(terraform: Terraform, tmp: Path, stack: str) -> Iterator[Applied]:
    stack_dir = copy_stack(tmp, stack)
    with moto_server(tmp / "moto.log") as endpoint:
        write_moto_override(stack_dir, endpoint)
        terraform.check(stack_dir, "init")
        started = time.monotonic()
        terraform.check(stack_dir, "apply", "-auto-approve", "-var-file=example.tfvars", timeout=900)
        result = Applied(terraform, stack_dir, endpoint, outputs(terraform, stack_dir))
        result.seconds["apply"] = time.monotonic() - started
        try:
            yield result
        finally:
            if not result.destroyed:  # a test failed before the destroy test: still clean up
                terraform.run(stack_dir, "destroy", "-auto-approve", "-var-file=example.tfvars", timeout=900)
            print(
                f"\n{stack} against moto: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
            )


def secret_values(stack: Applied, secret_arn: str) -> list[str]:
    """The generated secrets' values (JSON object or plain string), long enough to grep for."""
    raw = stack.aws("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    values = list(json.loads(raw).values()) if raw.startswith("{") else [raw]
    # The password part of user:password too: it must not leak on its own either.
    parts = [v.split(":", 1)[1] if ":" in v else v for v in values]
    assert all(len(p) >= 24 for p in parts), "generated passwords are long"
    return parts


def ingress(ec2: Any, group_id: str) -> set[tuple[int, str]]:
    """(port, source) pairs a security group admits; source is a CIDR or a security group id."""
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
    found = set()
    for rule in rules["SecurityGroupRules"]:
        if not rule["IsEgress"]:
            source = rule.get("CidrIpv4") or rule.get("ReferencedGroupInfo", {}).get("GroupId")
            found.add((rule["FromPort"], source))
    return found


# ---------------------------------------------------------------- ec2-compose ----
@pytest.fixture(scope="module")
def ec2_stack(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    with applied(terraform, tmp_path_factory.mktemp("ec2-compose"), "ec2-compose") as stack:
        yield stack


@pytest.fixture(scope="module")
def host(ec2_stack: Applied) -> dict[str, Any]:
    reservations = ec2_stack.aws("ec2").describe_instances(InstanceIds=[ec2_stack.outputs["instance_id"]])
    return reservations["Reservations"][0]["Instances"][0]


def user_data(stack: Applied) -> str:
    attribute = stack.aws("ec2").describe_instance_attribute(
        InstanceId=stack.outputs["instance_id"], Attribute="userData"
    )
    return base64.b64decode(attribute["UserData"]["Value"]).decode()


def test_ec2_user_data_is_the_project_bootstrap_with_the_stack_settings(ec2_stack: Applied) -> None:
    text = user_data(ec2_stack)
    # The project's script, unchanged, after the settings: it starts the stack (START_STACK=true).
    bootstrap = (REPO / "ec2-userdata.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and text.endswith(bootstrap)
    assert 'START_STACK="${START_STACK:-true}"' in bootstrap and "START_STACK" not in text[: -len(bootstrap)]
    assert "./scripts/up" in bootstrap
    # The settings header is valid bash that exports what the bootstrap reads.
    header = text[: -len(bootstrap)]
    shown = subprocess.run(
        ["bash", "-c", header + '\nprintf "%s\\n" "$REPO_URL" "$REPO_REF" "$SECRET_ID" "$BACKUP_S3_URI" '
         '"$PUBLIC_HOSTNAME" "$ACME_EMAIL"'],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()  # fmt: skip
    assert shown == [
        "https://github.com/your-org/prefect-platform.git",
        "main",
        ec2_stack.outputs["secret_arn"],
        ec2_stack.outputs["backup_s3_uri"],
        "prefect.example.com",
        "ops@example.com",
    ]
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_ec2_user_data_and_outputs_hold_no_secret(ec2_stack: Applied) -> None:
    secrets = secret_values(ec2_stack, ec2_stack.outputs["secret_arn"])
    text = user_data(ec2_stack) + json.dumps(ec2_stack.outputs) + ec2_stack.state_text()
    # Write-only seeding: the passwords are in Secrets Manager, not in the user data or the state.
    assert not [s for s in secrets if s in text]


def test_ec2_security_group_publishes_only_443_and_80_in_tls_mode(ec2_stack: Applied, host: dict) -> None:
    ec2 = ec2_stack.aws("ec2")
    # moto lists a VPC instance's groups on its network interface only.
    groups = {g["GroupId"] for eni in host["NetworkInterfaces"] for g in eni["Groups"]}
    groups |= {g["GroupId"] for g in host["SecurityGroups"]}
    assert len(groups) == 1
    groups = sorted(groups)
    assert ingress(ec2, groups[0]) == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}  # no 22, no 4200
    assert ec2_stack.outputs["ui_url"] == "https://prefect.example.com"


def test_ec2_host_is_a_t3_small_with_imdsv2_and_an_encrypted_gp3_root(ec2_stack: Applied, host: dict) -> None:
    assert host["InstanceType"] == "t3.small"
    options = host["MetadataOptions"]
    assert options["HttpTokens"] == "required" and options["HttpPutResponseHopLimit"] == 2
    volume_id = host["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = ec2_stack.aws("ec2").describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Encrypted"] is True and volume["VolumeType"] == "gp3" and volume["Size"] == 30
    address = ec2_stack.aws("ec2").describe_addresses(PublicIps=[ec2_stack.outputs["public_ip"]])
    assert address["Addresses"][0]["InstanceId"] == host["InstanceId"], "the Elastic IP is the host's"
    assert host["InstanceId"] in ec2_stack.outputs["ssm_session_command"]


def test_ec2_role_reads_one_secret_and_writes_one_backup_prefix(ec2_stack: Applied) -> None:
    iam = ec2_stack.aws("iam")
    role = ec2_stack.outputs["role_name"]
    policy = iam.get_role_policy(RoleName=role, PolicyName="platform")["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"ReadPlatformSecret", "WriteBackups", "ListBackups"}
    assert by_sid["ReadPlatformSecret"]["Resource"] == ec2_stack.outputs["secret_arn"]
    bucket, prefix = ec2_stack.outputs["backup_s3_uri"].removeprefix("s3://").split("/", 1)
    assert by_sid["WriteBackups"]["Resource"] == f"arn:aws:s3:::{bucket}/{prefix}*"
    assert "s3:GetObject" not in json.dumps(policy) and "s3:DeleteObject" not in json.dumps(policy)
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonSSMManagedInstanceCore"]
    # The backup bucket: private and versioned.
    s3 = ec2_stack.aws("s3")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_ec2_secret_is_seeded_with_generated_credentials(ec2_stack: Applied) -> None:
    raw = ec2_stack.aws("secretsmanager").get_secret_value(SecretId=ec2_stack.outputs["secret_arn"])
    seeded = json.loads(raw["SecretString"])
    assert set(seeded) == {"PREFECT_API_AUTH_STRING", "POSTGRES_PASSWORD"}
    assert seeded["PREFECT_API_AUTH_STRING"].startswith("admin:")


def test_ec2_destroy_leaves_nothing(ec2_stack: Applied, host: dict) -> None:
    ec2_stack.destroy()
    ec2 = ec2_stack.aws("ec2")
    state = ec2.describe_instances(InstanceIds=[host["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "terminated"
    assert not ec2.describe_vpcs(Filters=[{"Name": "tag:Stack", "Values": ["prefect-demo"]}])["Vpcs"]
    assert not ec2.describe_addresses()["Addresses"]
    roles = ec2_stack.aws("iam").list_roles()["Roles"]
    assert not [r["RoleName"] for r in roles if r["RoleName"].startswith("prefect-demo")]
    assert not ec2_stack.aws("s3").list_buckets()["Buckets"]


# ---------------------------------------------------------------- ecs-rds ----
@pytest.fixture(scope="module")
def ecs_stack(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    with applied(terraform, tmp_path_factory.mktemp("ecs-rds"), "ecs-rds") as stack:
        yield stack


@pytest.fixture(scope="module")
def database(ecs_stack: Applied) -> dict[str, Any]:
    return ecs_stack.aws("rds").describe_db_instances(DBInstanceIdentifier="prefect-demo")["DBInstances"][0]


def task_definition(stack: Applied, service: str) -> dict[str, Any]:
    ecs = stack.aws("ecs")
    described = ecs.describe_services(cluster=stack.outputs["cluster_arn"], services=[service])["services"][0]
    return ecs.describe_task_definition(taskDefinition=described["taskDefinition"])["taskDefinition"]


def test_ecs_database_is_private_encrypted_and_reached_only_from_the_server(
    ecs_stack: Applied, database: dict
) -> None:
    assert database["PubliclyAccessible"] is False
    assert database["StorageEncrypted"] is True
    assert database["Engine"] == "postgres" and database["DBInstanceClass"] == "db.t4g.micro"
    assert database["MasterUserSecret"]["SecretArn"] == ecs_stack.outputs["db_secret_arn"]
    ec2 = ecs_stack.aws("ec2")
    (group,) = [g["VpcSecurityGroupId"] for g in database["VpcSecurityGroups"]]
    server_group = task_definition_network(ecs_stack, "prefect-demo-server")
    assert ingress(ec2, group) == {(5432, server_group)}
    # In the private subnets: no route to an internet gateway.
    subnets = [s["SubnetIdentifier"] for s in database["DBSubnetGroup"]["Subnets"]]
    tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": subnets}])
    assert not tables["RouteTables"], "private subnets keep the main route table (local routes only)"


def task_definition_network(stack: Applied, service: str) -> str:
    ecs = stack.aws("ecs")
    described = ecs.describe_services(cluster=stack.outputs["cluster_arn"], services=[service])["services"][0]
    (group,) = described["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"]
    return group


def test_ecs_server_gets_its_passwords_from_secrets_manager_not_plain_environment(ecs_stack: Applied) -> None:
    (container,) = task_definition(ecs_stack, "prefect-demo-server")["containerDefinitions"]
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert secrets == {
        "PREFECT_SERVER_DATABASE_PASSWORD": f"{ecs_stack.outputs['db_secret_arn']}:password::",
        "PREFECT_SERVER_API_AUTH_STRING": ecs_stack.outputs["api_auth_secret_arn"],
    }
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert not [k for k in environment if "PASSWORD" in k or "AUTH" in k]
    assert environment["PREFECT_SERVER_DATABASE_HOST"] == ecs_stack.outputs["db_address"]
    # The generated auth string is nowhere in the outputs, the task definitions or the state.
    (auth,) = secret_values(ecs_stack, ecs_stack.outputs["api_auth_secret_arn"])
    (worker,) = task_definition(ecs_stack, "prefect-demo-worker")["containerDefinitions"]
    text = json.dumps([container, worker, ecs_stack.outputs]) + ecs_stack.state_text()
    assert auth not in text


def test_ecs_worker_polls_the_ecs_pool_on_the_private_api(ecs_stack: Applied) -> None:
    (worker,) = task_definition(ecs_stack, "prefect-demo-worker")["containerDefinitions"]
    assert worker["command"][:4] == ["prefect", "worker", "start", "--pool"]
    assert worker["command"][4] == ecs_stack.outputs["work_pool_name"] == "ecs-pool"
    assert worker["command"][worker["command"].index("--type") + 1] == "ecs"
    environment = {e["name"]: e["value"] for e in worker["environment"]}
    assert environment["PREFECT_API_URL"] == ecs_stack.outputs["prefect_api_url"]
    assert {s["name"] for s in worker["secrets"]} == {"PREFECT_API_AUTH_STRING"}


def test_ecs_load_balancer_admits_http_only_on_80_without_a_certificate(ecs_stack: Applied) -> None:
    elbv2 = ecs_stack.aws("elbv2")
    (balancer,) = elbv2.describe_load_balancers(Names=["prefect-demo"])["LoadBalancers"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert [(lst["Port"], lst["DefaultActions"][0]["Type"]) for lst in listeners] == [(80, "forward")]
    (group,) = balancer["SecurityGroups"]
    assert ingress(ecs_stack.aws("ec2"), group) == {(80, "0.0.0.0/0")}
    # The server admits 4200 from the load balancer and the runtime tasks only.
    server_group = task_definition_network(ecs_stack, "prefect-demo-server")
    runtime_group = ecs_stack.outputs["flow_run_security_group_ids"][0]
    assert ingress(ecs_stack.aws("ec2"), server_group) == {(4200, group), (4200, runtime_group)}
    assert not ingress(ecs_stack.aws("ec2"), runtime_group), "nothing comes in to the worker or flow runs"


def test_ecs_worker_may_pass_only_the_flow_run_roles(ecs_stack: Applied) -> None:
    policy = ecs_stack.aws("iam").get_role_policy(RoleName="prefect-demo-worker", PolicyName="ecs-worker")
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    passed = statements["PassOnlyTheFlowRunRoles"]["Resource"]
    assert sorted(passed) == sorted(
        [ecs_stack.outputs["flow_run_task_role_arn"], ecs_stack.outputs["flow_run_execution_role_arn"]]
    )
    assert (
        statements["RunFlowRunsInThisClusterOnly"]["Condition"]["ArnEquals"]["ecs:cluster"]
        == (ecs_stack.outputs["cluster_arn"])
    )


def test_ecs_pool_settings_are_what_the_init_needs_and_name_what_was_created(ecs_stack: Applied) -> None:
    from services.init import ecs_pool

    settings = ecs_stack.outputs["ecs_pool_settings"]
    assert set(settings) == set(ecs_pool.SETTINGS)
    values = ecs_pool.ecs_values(settings)  # the init accepts them as they are
    template = ecs_pool.ecs_job_template(values)
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    ecr = ecs_stack.aws("ecr").describe_repositories(repositoryNames=["prefect-demo/flow-runner"])
    assert defaults["image"] == f"{ecr['repositories'][0]['repositoryUri']}:0.1.0"
    assert defaults["cluster"] == ecs_stack.outputs["cluster_arn"]
    subnets = ecs_stack.aws("ec2").describe_subnets(SubnetIds=defaults["network_configuration"]["subnets"])
    assert {s["VpcId"] for s in subnets["Subnets"]} == {defaults["vpc_id"]}
    logs = ecs_stack.aws("logs").describe_log_groups(logGroupNamePrefix="/ecs/prefect-demo/")["logGroups"]
    assert defaults["cloudwatch_logs_options"]["awslogs-group"] in {g["logGroupName"] for g in logs}
    assert defaults["env"]["PREFECT_API_URL"] == ecs_stack.outputs["prefect_api_url"]
    assert defaults["prefect_api_auth_string_secret_arn"] == ecs_stack.outputs["api_auth_secret_arn"]
    assert settings["ECS_WORK_POOL_NAME"] == ecs_stack.outputs["work_pool_name"]


def test_ecs_destroy_leaves_nothing(ecs_stack: Applied) -> None:
    ecs_stack.destroy()
    assert not ecs_stack.aws("rds").describe_db_instances()["DBInstances"]
    assert not ecs_stack.aws("elbv2").describe_load_balancers()["LoadBalancers"]
    assert not ecs_stack.aws("ecr").describe_repositories()["repositories"]
    clusters = ecs_stack.aws("ecs").describe_clusters(clusters=["prefect-demo"])["clusters"]
    assert all(c["status"] == "INACTIVE" for c in clusters)
    assert not ecs_stack.aws("ec2").describe_vpcs(
        Filters=[{"Name": "tag:Stack", "Values": ["prefect-demo"]}]
    )["Vpcs"]
