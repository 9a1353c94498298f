"""Terraform tooling for tests/terraform: the CLI, the provider mirror, moto, throwaway stack copies.

Without terraform or a local mirror of hashicorp/aws these tests skip, unless REQUIRE_TERRAFORM=1
(set by .ci/run): then they fail, so CI can never go green without having run them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts.lib.terraform_mirror import find_mirror

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
MOTO_SERVER = REPO / ".venv" / "bin" / "moto_server"
# Services the stacks call; every one is pointed at moto by the override file.
MOTO_ENDPOINTS = (
    "ec2", "iam", "sts", "s3", "ssm", "secretsmanager",
    "ecs", "ecr", "elbv2", "rds", "cloudwatchlogs", "servicediscovery",
)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so this folder runs on its own under --strict-markers.
    config.addinivalue_line("markers", "terraform: Terraform fmt/validate, and apply/destroy against moto")


@dataclass(frozen=True)
class Terraform:
    binary: str
    cli_config: Path

    def env(self) -> dict[str, str]:
        """Terraform's environment: the offline CLI config, and no AWS credentials of the host."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
        env.update(
            TF_CLI_CONFIG_FILE=str(self.cli_config),
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def run(self, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args, "-no-color"],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def check(self, cwd: Path, *args: str, timeout: float = 300) -> str:
        """Runs terraform and fails the test with its output when it fails."""
        result = self.run(cwd, *args, timeout=timeout)
        if result.returncode != 0:
            command = " ".join(args)
            pytest.fail(
                f"terraform {command} in {cwd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
            )
        return result.stdout


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    binary = shutil.which("terraform")
    mirror = find_mirror()
    problems = []
    if binary is None:
        problems.append("terraform is not on PATH")
    if mirror is None:
        problems.append(
            "no local filesystem mirror of hashicorp/aws was found (scripts/lib/terraform_mirror.py "
            "looks for it; set TF_PROVIDER_MIRROR to the folder above registry.terraform.io)"
        )
    if problems:
        message = "; ".join(problems)
        if os.environ.get("REQUIRE_TERRAFORM") == "1":
            pytest.fail(f"REQUIRE_TERRAFORM=1 but {message} (see ../shared/VERSIONS.md)")
        pytest.skip(f"{message}; set REQUIRE_TERRAFORM=1 to make this a failure")
    assert binary is not None and mirror is not None
    cli_config = tmp_path_factory.mktemp("terraform-cli") / "terraformrc"
    # Only the mirror: nothing is ever fetched from a registry.
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n'
    )
    return Terraform(binary, cli_config)


def copy_stack(destination: Path, stack: str) -> Path:
    """A throwaway copy of terraform/ (and the ec2-userdata.sh it reads) laid out as in the repo."""
    shutil.copytree(
        TERRAFORM_DIR,
        destination / "terraform",
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl", "*_override.tf"),
    )
    shutil.copy2(REPO / "ec2-userdata.sh", destination / "ec2-userdata.sh")
    return destination / "terraform" / stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    """A fresh moto server on loopback (fresh state: moto keeps deleted secrets' names)."""
    if not MOTO_SERVER.exists():
        pytest.fail(f"{MOTO_SERVER} is missing: run `uv sync` (moto[server] is in the dev group)")
    port = free_port()
    env = dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true")  # AmazonSSMManagedInstanceCore
    with log_path.open("w") as log:
        command = [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_moto_override(stack_dir: Path, endpoint: str, offline: bool = False) -> None:
    """Points the stack's provider at moto: test-only, the modules know nothing of it.

    ``offline``: for a closed endpoint, no account lookup at configure time and one attempt per
    call (the provider's retries would otherwise take a minute and a half to give up).
    """
    endpoints = "\n".join(f'    {name} = "{endpoint}"' for name in MOTO_ENDPOINTS)
    extra = "  skip_requesting_account_id  = true\n  max_retries                 = 1\n" if offline else ""
    (stack_dir / "moto_override.tf").write_text(
        'provider "aws" {\n'
        f"{extra}"
        '  access_key                  = "test"\n'
        '  secret_key                  = "test"\n'
        "  skip_credentials_validation = true\n"
        "  skip_metadata_api_check     = true\n"
        "  s3_use_path_style           = true\n"
        f"  endpoints {{\n{endpoints}\n  }}\n"
        "}\n"
    )


def boto3_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def outputs(terraform: Terraform, stack_dir: Path) -> dict[str, Any]:
    raw = json.loads(terraform.check(stack_dir, "output", "-json"))
    return {name: value["value"] for name, value in raw.items()}
