"""services/worker/process.py and its compose service: the process pool kept as code on the real test
server, the platform's command fixed, and a worker container that holds the flows' settings but
not the stack's secrets, no Docker socket, and the code read-only. (A run on it: tests/e2e/test_jobs.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate

from services import contract
from services.worker.process import ensure_pool, job_template
from tests.support import REPO

POOL = "process-pool-test"


def test_template_fixes_the_platform_command_and_leaves_env_labels_name() -> None:
    template = job_template()
    assert template["job_configuration"]["command"] == contract.FLOW_RUN_COMMAND
    assert template["job_configuration"]["working_dir"] is None  # the worker's per-run scratch folder
    assert set(template["variables"]["properties"]) == {"env", "labels", "name"}


@pytest.mark.usefixtures("prefect_server")
def test_the_pool_is_created_kept_and_restored() -> None:
    template = job_template()
    with get_client(sync_client=True) as client:
        assert ensure_pool(client, POOL, template) == f"work pool {POOL!r} created (type process)"
        assert ensure_pool(client, POOL, template) == f"work pool {POOL!r} unchanged"
        edited = json.loads(json.dumps(template))
        edited["job_configuration"]["command"] = "python -c 'import os; os.system(\"...\")'"
        client.update_work_pool(POOL, WorkPoolUpdate(base_job_template=edited))  # e.g. in the UI
        assert ensure_pool(client, POOL, template) == f"work pool {POOL!r} base job template updated"
        assert client.read_work_pool(POOL).base_job_template == template
        client.create_work_pool(WorkPoolCreate(name="docker-named", type="docker"))
        with pytest.raises(SystemExit, match="exists with type 'docker'"):
            ensure_pool(client, "docker-named", template)


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker client is not installed")
def test_the_process_profile_runs_a_worker_without_secrets_or_docker_socket(tmp_path: Path) -> None:
    env_file = tmp_path / "test.env"
    env_file.write_text(
        (REPO / ".env.example")
        .read_text()
        .replace("__GENERATE__", "x" * 32)
        .replace("PLATFORM_DIR=\n", f"PLATFORM_DIR={REPO}\n")
        .replace("PROCESS_WORK_POOL_NAME=\n", "PROCESS_WORK_POOL_NAME=light-pool\n")
    )
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "docker-compose.yml", project)
    shutil.copy(env_file, project / ".env")  # what the worker reads as its env_file
    (project / ".env").write_text((project / ".env").read_text() + "REST_API_TOKEN=rest-secret\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "PREFECT_", "COMPOSE_"))}
    config = subprocess.run(
        [
            "docker",
            "compose",
            "--env-file",
            str(env_file),
            "--profile",
            "process",
            "config",
            "--format",
            "json",
        ],
        cwd=project,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    worker = json.loads(config.stdout)["services"]["prefect-process-worker"]
    assert worker["command"][2:5] == ["services.worker.process", "--pool", "light-pool"]
    assert worker["image"] == "prefect-platform/flow-runner:local"
    environment = worker["environment"]
    assert environment["REST_API_TOKEN"] == "rest-secret", "the flows' settings reach the runs"
    assert environment["POSTGRES_PASSWORD"] == "" and environment["PLATFORM_DIR"] == ""
    mounts = {(v.get("source"), v["target"], v.get("read_only", False)) for v in worker["volumes"]}
    assert (str(project / "flows"), contract.FLOWS_DIR, True) in mounts
    assert ("data", contract.DATA_DIR, False) in mounts  # the stack's data volume
    assert not any(v.get("source") == "/var/run/docker.sock" for v in worker["volumes"])
    assert worker["user"] == "1000" and worker["cap_drop"] == ["ALL"] and worker["read_only"] is True
    assert worker["security_opt"] == ["no-new-privileges:true"] and worker["mem_limit"]
