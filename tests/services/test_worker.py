"""services/worker: the platform's Docker worker cancels runs whose container already started.

A real Prefect server (the session's test server), a real container on the real engine, and the
worker's own polling loop: the run is marked Cancelled and its container killed.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Cancelling, Running
from prefect_docker.worker import DockerWorker

from services.work_pools import job_template, template_values
from services.worker.__main__ import parse_args
from services.worker.docker_worker import PlatformDockerWorker
from services.worker.job_policy import JobPolicy

pytestmark = pytest.mark.timeout(300)


@flow
def sleeper() -> None:
    """Never runs here: the test only needs a flow to create a deployment of."""


async def running_run(client: Any, pool: str, deployment: str) -> Any:
    """A Running flow run of a new deployment in a new Docker pool ``pool`` (Prefect's default template)."""
    await client.create_work_pool(
        WorkPoolCreate(
            name=pool, type="docker", base_job_template=DockerWorker.get_default_base_job_template()
        )
    )
    flow_id = await client.create_flow(sleeper)
    deployment_id = await client.create_deployment(
        flow_id=flow_id, name=deployment, work_pool_name=pool, entrypoint="x.py:sleeper"
    )
    run = await client.create_flow_run_from_deployment(deployment_id)
    await client.set_flow_run_state(run.id, Running(), force=True)
    return run


def test_arguments_are_required() -> None:
    args = parse_args(["--pool", "p", "--name", "w", "--limit", "3"])
    assert (args.pool, args.name, args.limit) == ("p", "w", 3)
    with pytest.raises(SystemExit):
        parse_args(["--pool", "p"])


def test_a_started_run_being_cancelled_is_marked_cancelled_and_its_container_killed(
    docker_engine: None, prefect_server: None
) -> None:
    pool = f"worker-test-{uuid.uuid4().hex[:8]}"
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "--label", "prefect-platform.test=worker",
         "debian:bookworm-slim", "sleep", "300"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    async def scenario() -> str:
        async with get_client() as client:
            run = await running_run(client, pool, "cancel-me")
            async with PlatformDockerWorker(work_pool_name=pool, name="w", limit=1) as worker:
                pid = worker._get_infrastructure_pid(container)
                await client.update_flow_run(run.id, infrastructure_pid=pid)
                await client.set_flow_run_state(run.id, Cancelling(), force=True)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    state = (await client.read_flow_run(run.id)).state
                    if state and state.name == "Cancelled":
                        return state.message or ""
                    await anyio.sleep(0.5)
        raise AssertionError(f"run still {state.name if state else None} after 30 s")

    try:
        message = anyio.run(scenario)
        assert message == "Cancelled by user."
        # --rm: a killed container is removed; give the engine a moment.
        for _ in range(20):
            listed = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True)
            if container not in listed.stdout:
                break
            time.sleep(0.5)
        assert container not in listed.stdout, "the cancelled run's container must be killed"
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def test_a_tampered_template_is_refused_by_the_worker_and_starts_no_container(
    docker_engine: None, prefect_server: None, tmp_path: Path
) -> None:
    """The second lock: the pool's template edited (as in the UI) to mount the host's `/`."""
    from prefect.exceptions import PrefectHTTPStatusError

    pool = f"policy-test-{uuid.uuid4().hex[:8]}"
    settings = {
        "PLATFORM_DIR": str(tmp_path),
        "COMPOSE_PROJECT_NAME": pool,
        "FLOW_RUN_IMAGE": "debian:bookworm-slim",
        "FLOW_RUN_MEMORY_LIMIT": "256m",
    }
    template = job_template("docker", template_values(settings.__getitem__))
    template["job_configuration"]["volumes"].append("/:/host:ro")
    label = f"prefect-platform.test={pool}"
    template["variables"]["properties"]["labels"]["default"] = dict([label.split("=")])

    async def scenario() -> tuple[str, str]:
        async with get_client() as client:
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type="docker", base_job_template=template)
            )
            flow_id = await client.create_flow(sleeper)
            deployment_id = await client.create_deployment(
                flow_id=flow_id, name="escalate", work_pool_name=pool, entrypoint="x.py:sleeper"
            )
            # The first lock: the API refuses a job variable outside the template's schema.
            try:
                await client.create_flow_run_from_deployment(
                    deployment_id, job_variables={"volumes": ["/:/host"]}
                )
                refused_at_creation = ""
            except PrefectHTTPStatusError as exc:
                refused_at_creation = f"{exc.response.status_code} {exc.response.text}"
            run = await client.create_flow_run_from_deployment(deployment_id)
            async with PlatformDockerWorker(work_pool_name=pool, name="w", limit=1) as worker:
                worker.policy = JobPolicy.from_settings(settings.__getitem__)
                await worker.get_and_submit_flow_runs()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state = (await client.read_flow_run(run.id)).state
                if state and state.is_final():
                    return refused_at_creation, f"{state.type.value}: {state.message}"
                await anyio.sleep(0.5)
            raise AssertionError(f"run not final: {state}")

    refused_at_creation, final = anyio.run(scenario)
    assert refused_at_creation.startswith("422") and "'volumes' was unexpected" in refused_at_creation, (
        refused_at_creation
    )
    assert final.startswith("FAILED: Refused by the platform's job policy: volume '/:/host:ro'"), final
    started = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True, check=True
    ).stdout
    assert not started.strip(), "no container may be created for a refused job"


def test_a_crashed_run_takes_its_running_task_runs_with_it(docker_engine: None, prefect_server: None) -> None:
    """A container killed mid-task: the engine cannot end the task it was in, the worker does."""
    from prefect.states import Completed

    pool = f"crash-test-{uuid.uuid4().hex[:8]}"

    async def scenario() -> dict[str, str]:
        async with get_client() as client:
            run = await running_run(client, pool, "crash-me")
            tasks = {}
            for name, state in (("ingest", Running()), ("done", Completed())):
                created = await client._client.post(
                    "/task_runs/",
                    json={"name": name, "flow_run_id": str(run.id), "task_key": name, "dynamic_key": "0"},
                )
                created.raise_for_status()
                tasks[name] = uuid.UUID(created.json()["id"])
                await client.set_task_run_state(tasks[name], state, force=True)
            async with PlatformDockerWorker(work_pool_name=pool, name="w", limit=1) as worker:
                worker.exit_explanations[run.id] = "killed by a signal (exit code 137)"
                await worker._propose_crashed_state(await client.read_flow_run(run.id), "exit 137")
            ended = {"flow": (await client.read_flow_run(run.id)).state}
            for name, task_id in tasks.items():
                ended[name] = (await client.read_task_run(task_id)).state
            return {name: f"{state.type.value}: {state.message}" for name, state in ended.items()}

    ended = anyio.run(scenario)
    assert ended["flow"] == "CRASHED: killed by a signal (exit code 137)", ended
    assert ended["ingest"] == "CRASHED: killed by a signal (exit code 137)", ended
    assert ended["done"].startswith("COMPLETED"), ended


def test_a_run_names_the_workers_engine_before_it_is_pending_and_not_when_another_took_it(
    docker_engine: None, prefect_server: None
) -> None:
    """A worker stopped right after Pending left a run no reconciling pass took as its own: Pending
    for ever (the fault suite's worker restart)."""
    from prefect.states import Pending

    from services.worker.reconcile import ENGINE_LABEL

    pool = f"label-test-{uuid.uuid4().hex[:8]}"
    engine_id = subprocess.run(
        ["docker", "info", "--format", "{{.ID}}"], capture_output=True, text=True, check=True
    ).stdout.strip()

    async def scenario() -> tuple[Any, Any, Any]:
        async with get_client() as client:
            run = await running_run(client, pool, "label-me")
            await client.set_flow_run_state(run.id, Pending(), force=True)  # another worker took it
            taken = await client.create_flow_run_from_deployment(run.deployment_id)
            async with PlatformDockerWorker(work_pool_name=pool, name="w", limit=1) as worker:
                ready = await worker._propose_pending_state(taken)
                refused = await worker._propose_pending_state(await client.read_flow_run(run.id))
                owned = (await worker.reconciler()).owns(await client.read_flow_run(run.id))
            return (
                (ready, (await client.read_flow_run(taken.id)).labels.get(ENGINE_LABEL)),
                (refused, (await client.read_flow_run(run.id)).labels.get(ENGINE_LABEL)),
                owned,
            )

    taken, refused, owned = anyio.run(scenario)
    assert taken == (True, engine_id), taken
    assert refused == (False, ""), refused
    assert owned is False
