"""End to end: worker-only mode. Stack A runs the whole platform; stack B (its own project name and
work pool) runs `./scripts/up --worker-only` against A's API, as a team would against a remote
server or Prefect Cloud.

Network: A publishes its API on the host's loopback only. B's containers (worker, init, deploy
step, flow runs) reach the host as `host.docker.internal` (compose's `extra_hosts: host-gateway`;
prefect-docker adds the same to flow-run containers), i.e. the Docker bridge's gateway address, so
a front (tests/support/api_front.py) listens there and forwards to A. Two fronts: a plain one
(self-hosted server: B sends A's basic-auth string) and one that stands in for Prefect Cloud (B
sends an API key; anything else is refused), which A then sees with its own auth string.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.api_front import ApiFront
from tests.support.stack import PrefectApi, Stack, copy_checkout, env_value, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

B_POOL = "b-pool"
API_KEY = "pnu_standin0123456789abcdefghijklmnopqrstuv"


def host_gateway(image: str) -> str:
    """The address `host-gateway` stands for, as a container resolves it (the Docker bridge's)."""
    out = subprocess.run(
        ["docker", "run", "--rm", "--add-host", "host.docker.internal:host-gateway", "--entrypoint",
         "getent", image, "hosts", "host.docker.internal"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", out[0]), out
    return out[0]


@dataclass
class WorkerOnlyStack(Stack):
    def up(self) -> subprocess.CompletedProcess[str]:
        return self.run("./scripts/up", "--worker-only")

    def configure(self, **settings: str) -> None:
        """Writes settings into .env as a user would (created from .env.example if absent)."""
        args = [f"--set={k}={v}" for k, v in settings.items()]
        self.run("python3", "scripts/lib/envfile.py", "ensure", "--env", ".env", "--example", ".env.example",
                 "--overwrite", *args)  # fmt: skip


@pytest.fixture(scope="module")
def stack_a(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack-a")
    copy_checkout(root)
    with running(Stack(root), request) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack_a: Stack) -> Iterator[PrefectApi]:
    with stack_a.client() as client:
        yield PrefectApi(client)


@pytest.fixture(scope="module")
def fronts(stack_a: Stack) -> Iterator[tuple[ApiFront, ApiFront]]:
    gateway = host_gateway(stack_a.image("prefect-worker"))
    auth = env_value(stack_a.root / ".env", "PREFECT_API_AUTH_STRING")
    plain = ApiFront(gateway, stack_a.port)
    cloud = ApiFront(gateway, stack_a.port, api_key=API_KEY, auth_string=auth)
    with plain.running(), cloud.running():
        yield plain, cloud


@pytest.fixture(scope="module")
def stack_b(
    stack_a: Stack,
    fronts: tuple[ApiFront, ApiFront],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[WorkerOnlyStack]:
    root = tmp_path_factory.mktemp("stack-b")
    copy_checkout(root)
    stack = WorkerOnlyStack(root)
    stack.configure(
        PREFECT_API_URL=f"http://host.docker.internal:{fronts[0].port}/api",
        PREFECT_API_AUTH_STRING=env_value(stack_a.root / ".env", "PREFECT_API_AUTH_STRING"),
        PREFECT_WORK_POOL_NAME=B_POOL,
    )
    with running(stack, request) as started:
        yield started


def run_self_check_in_b(stack_b: Stack, api: PrefectApi) -> tuple[dict, list[str], str]:
    """Triggers B's self-check through A's API; returns the run, its logs and its container."""
    deployment = api.deployment("platform-check", "self-check")
    assert deployment["work_pool_name"] == B_POOL, "B's deploy step registered it for B's pool"
    # Containers joining B's network, recorded live: the engine keeps only its last 256 events for
    # `docker events --since`, and the healthchecks of four stacks at once overwrite them in seconds.
    watch = subprocess.Popen(
        ["docker", "events", "--filter", "type=network", "--filter", "event=connect",
         "--filter", f"network={stack_b.project}", "--format", "{{.Actor.Attributes.container}}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run = api.wait(api.trigger("platform-check", "self-check"), timeout=300)
        logs = api.logs_with(run["id"], "platform-check marker=")
    finally:
        watch.terminate()
        joined = watch.communicate(timeout=30)[0].split()
    host = re.search(r"host=(\w+)", "\n".join(logs))
    assert host, logs
    # The run's container joined B's network: it was started by B's worker, on B's engine side.
    assert any(cid.startswith(host.group(1)) for cid in joined), (
        f"{host.group(1)} never joined {stack_b.project}; containers that did: {joined}"
    )
    return run, logs, host.group(1)


def test_worker_only_starts_no_server_and_says_where_the_api_is(stack_b: WorkerOnlyStack) -> None:
    services = set(stack_b.compose("ps", "-a", "--format", "{{.Service}}").stdout.split())
    assert {"prefect-worker", "prefect-init", "prefect-deploy"} <= services
    assert not services & {"postgres", "prefect-server", "prefect-migrate", "proxy"}
    assert not subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"name={stack_b.project}_postgres-data"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert (
        stack_b.up_result.stdout.strip()
        .splitlines()[-1]
        .split()[-1]
        .startswith("http://host.docker.internal:")
    )  # type: ignore[attr-defined]


def test_b_registers_its_pool_on_a_and_runs_a_deployment_in_its_own_containers(
    stack_a: Stack, stack_b: WorkerOnlyStack, api: PrefectApi
) -> None:
    pool = api.get(f"/work_pools/{B_POOL}")
    assert pool["type"] == "docker"
    defaults = {k: v.get("default") for k, v in pool["base_job_template"]["variables"]["properties"].items()}
    assert pool["base_job_template"]["job_configuration"]["networks"] == [stack_b.project]
    assert defaults["mem_limit"]
    run, logs, host = run_self_check_in_b(stack_b, api)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert any("Retry 1/2" in line for line in logs)
    # A's own worker never saw it: A's containers are none of the flow's.
    assert not any(cid.startswith(host) for cid in stack_a.compose("ps", "-aq").stdout.split())
    workers = api.post(f"/work_pools/{B_POOL}/workers/filter")
    assert [w["name"] for w in workers] == [f"{stack_b.project}-worker"]


def test_an_api_key_reaches_the_worker_and_flow_runs_and_is_never_shown(
    stack_a: Stack, stack_b: WorkerOnlyStack, fronts: tuple[ApiFront, ApiFront], api: PrefectApi
) -> None:
    cloud = fronts[1]
    # Prefect Cloud's path: the workspace URL and an API key; the generated auth string stays in
    # .env and must not be what is sent.
    stack_b.configure(
        PREFECT_API_URL=f"http://host.docker.internal:{cloud.port}/api", PREFECT_API_KEY=API_KEY
    )
    stack_b.run("./scripts/up", "--worker-only", "--no-build")
    worker_env = json.loads(
        subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Env}}", f"{stack_b.project}-prefect-worker-1"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert f"PREFECT_API_KEY={API_KEY}" in worker_env
    run, logs, _host = run_self_check_in_b(stack_b, api)
    assert run["state_type"] == "COMPLETED", run["state"]
    # Every request from B (init, deploy, worker, the flow run in its container) carried the key.
    assert cloud.accepted > 0 and cloud.rejected == [], cloud.rejected[:5]
    # Nowhere to be read: the pool's template, the deployment, the run, its logs, both stacks' logs.
    shown = json.dumps(
        [api.get(f"/work_pools/{B_POOL}"), api.deployment("platform-check", "self-check"), run, logs]
    )
    assert API_KEY not in shown
    for stack in (stack_a, stack_b):
        assert API_KEY not in stack.compose("logs", "--no-color").stdout


def test_worker_only_without_an_api_url_is_refused_before_anything_starts(
    docker_engine: None, tmp_path: Path
) -> None:
    copy_checkout(tmp_path)
    stack = WorkerOnlyStack(tmp_path)
    result = stack.run("./scripts/up", "--worker-only", check=False)
    assert result.returncode == 1
    assert "--worker-only needs PREFECT_API_URL" in result.stderr
    assert not stack.compose("ps", "-aq").stdout.strip()
