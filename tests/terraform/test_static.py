"""Terraform checks that need no AWS: formatting, validation, and the variables' validations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform.conftest import TERRAFORM_DIR, Terraform, copy_stack, write_moto_override

pytestmark = pytest.mark.terraform

STACKS = ("ec2-compose", "ecs-rds")
MODULES = sorted(p.name for p in (TERRAFORM_DIR / "modules").iterdir() if p.is_dir())


def test_fmt_is_clean(terraform: Terraform) -> None:
    result = terraform.run(TERRAFORM_DIR, "fmt", "-check", "-recursive", "-diff")
    assert result.returncode == 0, f"terraform fmt -recursive would change:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def initialized(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each stack copied and initialized once (the provider takes seconds to load on 2 cores).

    The provider points at a closed port without retries: a plan that got past the validations fails
    there at once instead of reaching anything.
    """
    stacks = {}
    for stack in STACKS:
        stack_dir = copy_stack(tmp_path_factory.mktemp(stack), stack)
        write_moto_override(stack_dir, "http://127.0.0.1:9", offline=True)
        terraform.check(stack_dir, "init", "-backend=false")
        stacks[stack] = stack_dir
    return stacks


@pytest.mark.parametrize("stack", STACKS)
def test_stack_validates(terraform: Terraform, initialized: dict[str, Path], stack: str) -> None:
    assert "The configuration is valid" in terraform.check(initialized[stack], "validate")


@pytest.mark.parametrize("module", MODULES)
def test_module_validates_on_its_own(terraform: Terraform, tmp_path: Path, module: str) -> None:
    # A module must stand alone (its own required_providers), not only inside today's stacks.
    module_dir = copy_stack(tmp_path, f"modules/{module}")
    terraform.check(module_dir, "init", "-backend=false")
    assert "The configuration is valid" in terraform.check(module_dir, "validate")


@pytest.mark.parametrize("stack", STACKS)
def test_every_variable_is_documented_and_typed(stack: str) -> None:
    # Root stacks and modules alike: a variable without a description or type is an API without docs.
    for path in [
        TERRAFORM_DIR / stack / "variables.tf",
        *sorted(TERRAFORM_DIR.glob("modules/*/variables.tf")),
    ]:
        blocks = path.read_text().split('variable "')[1:]
        assert blocks, path
        for block in blocks:
            name = block.split('"', 1)[0]
            assert "description =" in block, f"{path}: variable {name} has no description"
            assert "type" in block.split("\n}", 1)[0], f"{path}: variable {name} has no type"


@pytest.mark.parametrize(
    ("stack", "assignment", "message"),
    [
        ("ec2-compose", 'ssh_cidrs=["0.0.0.0/0"]', "never 0.0.0.0/0"),
        ("ec2-compose", "instance_type=t3.micro", "at least 2 GiB"),
        ("ec2-compose", "ingress_ports=[22]", "22 goes through ssh_cidrs"),
        ("ec2-compose", 'ingress_cidrs=["10.0.0.300/32"]', "IPv4 CIDRs"),
        ("ec2-compose", "backup_prefix=/backups", "ending with /"),
        ("ecs-rds", "name=Prefect_Platform", "lowercase letters"),
        ("ecs-rds", "certificate_arn=arn:aws:iam::123456789012:server-certificate/x", "ACM certificate ARN"),
        ("ecs-rds", "log_retention_days=10", "CloudWatch's values"),
    ],
)
def test_invalid_inputs_are_refused_before_anything_is_created(
    terraform: Terraform, initialized: dict[str, Path], stack: str, assignment: str, message: str
) -> None:
    result = terraform.run(
        initialized[stack],
        "plan",
        "-refresh=false",
        "-var-file=example.tfvars",
        "-var",
        assignment,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Invalid value for variable" in result.stderr, result.stderr[-3000:]
    assert message in " ".join(result.stderr.split()), result.stderr[-3000:]
