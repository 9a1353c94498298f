"""End to end: flow code cannot take over the host (issue: a locked job template, a worker that
enforces it, no secrets or database within a flow's reach, hardened containers).

One stack for the module. The attacker is anyone holding the API credential, which every flow run
holds: the tests use the API exactly as flow code could.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.stack import PrefectApi, Stack, copy_checkout, env_value, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

ESCALATIONS: dict[str, dict[str, Any]] = {
    # The review's attack: root, the host's / mounted, a command of the attacker's.
    "host root": {"env": {"RUN_AS_UID": "0"}, "volumes": ["/:/host:ro"], "command": "cat /host/etc/shadow"},
    "privileged": {"privileged": True},
    "image": {"image": "debian:bookworm-slim"},
    "host network": {"network_mode": "host"},
    "capabilities": {"container_create_kwargs": {"cap_add": ["SYS_ADMIN"]}},
    "docker socket": {"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
    "api address": {"env": {"PREFECT_API_URL": "http://attacker.example/api"}},
}
PROBE = """\
import json
import os
import socket
from pathlib import Path

from prefect import flow, get_run_logger

SKIP = ("/opt/venv", "/proc", "/sys", "/dev", "/usr")


@flow
def probe(head: str, tail: str) -> dict:
    # The secret arrives in two halves, so the run's parameters never hold it whole.
    needle = head + tail
    out = {"uid": os.getuid(), "cwd": os.getcwd()}
    try:
        address = socket.getaddrinfo("postgres", 5432)[0][4]
        socket.create_connection(address[:2], timeout=3).close()
        out["postgres"] = "connected"
    except OSError as exc:
        out["postgres"] = f"unreachable: {exc}"
    out["env_with_needle"] = sorted(k for k, v in os.environ.items() if needle in v)
    hits = []
    for path in [Path("/proc/self/environ"), Path("/proc/1/environ"), *Path("/").rglob("*")]:
        text = str(path)
        if text.startswith(SKIP) and not text.endswith("environ"):
            continue
        try:
            if path.is_file() and path.stat().st_size < 5_000_000 and needle.encode() in path.read_bytes():
                hits.append(text)
        except OSError:
            pass
    out["files_with_needle"] = hits
    Path("written-here.txt").write_text("ok")
    out["scratch_file"] = str(Path("written-here.txt").resolve())
    try:
        Path("/opt/prefect/flows/planted.py").write_text("x")
        out["code_writable"] = True
    except OSError:
        out["code_writable"] = False
    get_run_logger().info("probe=%s", json.dumps(out))
    return out
"""


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("clone")
    copy_checkout(root)
    (root / "flows" / "probe.py").write_text(PROBE)
    with running(Stack(root), request) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[PrefectApi]:
    with stack.client() as client:
        yield PrefectApi(client)


def flow_run_containers(stack: Stack) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=prefect-platform.role=flow-run",
         "--filter", f"network={stack.project}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip


@pytest.mark.parametrize("attempt", sorted(ESCALATIONS))
def test_escalation_job_variables_are_refused_when_the_run_is_created(
    stack: Stack, api: PrefectApi, attempt: str
) -> None:
    deployment = api.deployment("platform-check", "self-check")
    variables = ESCALATIONS[attempt]
    response = api.http.post(
        f"/deployments/{deployment['id']}/create_flow_run", json={"job_variables": variables}
    )
    print(f"{attempt}: {response.status_code} {response.text}")
    assert response.status_code == 422, response.text
    refused = [name for name in variables if name != "env"] or [next(iter(variables["env"]))]
    assert any(repr(name) in response.text or name in response.text for name in refused), response.text


def test_a_pool_edited_to_mount_the_host_is_refused_by_the_worker_and_restored_by_init(
    stack: Stack, api: PrefectApi
) -> None:
    pool = api.get("/work_pools/docker-pool")
    template = pool["base_job_template"]
    template["job_configuration"]["volumes"].append("/:/host:ro")
    api.http.patch("/work_pools/docker-pool", json={"base_job_template": template}).raise_for_status()
    before = set(flow_run_containers(stack))
    run = api.wait(api.trigger("platform-check", "self-check"))
    print(f"tampered pool: {run['state_type']}: {run['state']['message']}")
    assert run["state_type"] == "FAILED"
    assert run["state"]["message"].startswith(
        "Refused by the platform's job policy: volume '/:/host:ro' is not allowed"
    )
    assert set(flow_run_containers(stack)) == before, "no container may be created for a refused job"
    # The template is code: the init puts it back, and runs work again.
    stack.compose("run", "--rm", "--no-deps", "prefect-init")
    restored = api.get("/work_pools/docker-pool")["base_job_template"]["job_configuration"]["volumes"]
    assert "/:/host:ro" not in restored
    assert api.wait(api.trigger("platform-check", "self-check"))["state_type"] == "COMPLETED"


def create_probe_deployment(api: PrefectApi) -> str:
    flow_id = api.post("/flows/", {"name": "probe"})["id"]
    deployment = api.post(
        "/deployments/",
        {
            "name": "probe",
            "flow_id": flow_id,
            "work_pool_name": "docker-pool",
            "entrypoint": "probe.py:probe",
            "pull_steps": [
                {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect/flows"}}
            ],
        },
    )
    return deployment["id"]


def test_a_flow_run_cannot_reach_postgres_nor_find_its_password(stack: Stack, api: PrefectApi) -> None:
    password = env_value(stack.root / ".env", "POSTGRES_PASSWORD")
    deployment_id = create_probe_deployment(api)
    halves = {"head": password[:10], "tail": password[10:]}
    run = api.post(f"/deployments/{deployment_id}/create_flow_run", {"parameters": halves})
    run = api.wait(run["id"])
    assert run["state_type"] == "COMPLETED", run["state"]
    line = next(line for line in api.logs_with(run["id"], "probe=") if line.startswith("probe="))
    probe = json.loads(line.removeprefix("probe="))
    print(f"probe: {probe}")
    assert probe["postgres"].startswith("unreachable"), probe
    assert probe["env_with_needle"] == [] and probe["files_with_needle"] == [], probe
    assert probe["uid"] == 1000
    # Relative paths land in the run's own scratch folder; the code is read-only.
    assert probe["cwd"] == "/scratch" and probe["scratch_file"] == "/scratch/written-here.txt"
    assert probe["code_writable"] is False
    assert not (stack.root / "flows" / "planted.py").exists()


def inspect(container: str) -> dict[str, Any]:
    return json.loads(
        subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout
    )[0]


def test_every_container_is_hardened(stack: Stack, api: PrefectApi) -> None:
    table = []
    for service in ("postgres", "prefect-server", "prefect-worker"):
        host = inspect(stack.compose("ps", "-q", service).stdout.strip())["HostConfig"]
        table.append(
            (
                service,
                host["CapDrop"],
                host["CapAdd"],
                host["SecurityOpt"],
                host["ReadonlyRootfs"],
                host["PidsLimit"],
            )
        )
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["PidsLimit"] and host["PidsLimit"] > 0, service
        assert host["ReadonlyRootfs"] is (service != "postgres"), service
        assert not host["Privileged"], service
    # A flow run, inspected while it runs.
    before = set(flow_run_containers(stack))
    run_id = api.trigger("platform-check", "self-check", {"hold_seconds": 30})
    deadline = time.monotonic() + 120
    while not (new := set(flow_run_containers(stack)) - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert new, "the flow run's container never appeared"
    details = inspect(new.pop())
    host, config = details["HostConfig"], details["Config"]
    table.append(
        (
            "flow run",
            host["CapDrop"],
            host["CapAdd"],
            host["SecurityOpt"],
            host["ReadonlyRootfs"],
            host["PidsLimit"],
        )
    )
    print("\n".join(str(row) for row in table))
    assert config["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"] and not host["Privileged"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["Memory"] > 0 and host["MemorySwap"] == host["Memory"], "no swap beyond the memory limit"
    binds = sorted(host["Binds"] or [])
    assert binds == sorted([f"{stack.root}/flows:/opt/prefect/flows:ro", f"{stack.project}-data:/data"]), (
        binds
    )
    assert not [e for e in config["Env"] if e.startswith("POSTGRES_PASSWORD=")]
    api.post(f"/flow_runs/{run_id}/set_state", {"state": {"type": "CANCELLING"}, "force": True})
    api.wait(run_id)


def test_only_health_and_readiness_answer_without_credentials(stack: Stack, api: PrefectApi) -> None:
    spec = api.get("/openapi.json") if api.http.get("/openapi.json").status_code == 200 else None
    assert spec, "the OpenAPI document must be readable with credentials"
    open_paths = []
    anonymous = httpx.Client(base_url=f"http://127.0.0.1:{stack.port}", timeout=10)
    checked = 0
    for path, operations in spec["paths"].items():
        # The document's paths are relative to its server URL, /api.
        url = "/api" + re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for method in operations:
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            status = anonymous.request(method.upper(), url, json={}).status_code
            checked += 1
            if status != 401:
                open_paths.append(f"{method.upper()} /api{path} -> {status}")
    print(f"{checked} operations swept without credentials; answered: {open_paths}")
    assert checked > 100
    assert sorted(open_paths) == ["GET /api/health -> 200", "GET /api/ready -> 200"], open_paths


def test_secrets_appear_in_no_image_log_template_or_api_object(stack: Stack, api: PrefectApi) -> None:
    env_file = stack.root / ".env"
    secrets = {
        "POSTGRES_PASSWORD": env_value(env_file, "POSTGRES_PASSWORD"),
        "API password": env_value(env_file, "PREFECT_API_AUTH_STRING").split(":", 1)[1],
    }
    places: dict[str, str] = {
        "container logs": stack.compose("logs", "--no-color").stdout,
        "work pool": json.dumps(api.get("/work_pools/docker-pool")),
        "deployments": json.dumps(api.post("/deployments/filter", {"limit": 200})),
        "automations": json.dumps(api.post("/automations/filter", {})),
        "blocks": json.dumps(api.post("/block_documents/filter", {"include_secrets": True})),
        "variables": json.dumps(api.post("/variables/filter", {})),
        "run logs": json.dumps(api.post("/logs/filter", {"limit": 200})),
        "flow runs": json.dumps(api.post("/flow_runs/filter", {"limit": 200})),
    }
    for service in ("prefect-server", "prefect-deploy"):
        image = stack.image(service)
        places[f"image {image} (config, history)"] = (
            subprocess.run(
                ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
            ).stdout
            + subprocess.run(
                ["docker", "history", "--no-trunc", image], capture_output=True, text=True, check=True
            ).stdout
        )
        saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
        for name, value in secrets.items():
            assert value.encode() not in saved, f"{name} is in the layers of {image}"
    for place, text in places.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} appears in {place}"
