"""services/worker/reconcile.py and exits.py: runs whose container is gone get their true final state.

A real Prefect server (the session's), real containers on the real engine (exited, killed, killed
for memory, still running, never created) and the Reconciler the worker runs: each run ends as its
container did, the warehouse lock it recorded is released, and runs of other engines are left alone.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.states import Crashed, Pending, Running
from prefect_docker.worker import DockerWorker

import docker
from services.worker.exits import FLOW_RUN_ID_LABEL, ContainerExit
from services.worker.reconcile import (
    ENGINE_LABEL,
    LEASE_LABEL,
    LOCK_LABEL,
    RESCHEDULED_LABEL,
    WORKER_NAME_LABEL,
    Reconciler,
)

pytestmark = pytest.mark.timeout(300)
WORKER = "reconcile-test-worker"
TEST_LABEL = "prefect-platform.test=reconcile"
GONE = "unix:///var/run/docker.sock:" + "0" * 64  # a container id no engine has


@flow
def sleeper() -> None:
    """Never runs: the runs below only need a deployment."""


@task
def step() -> None:
    """Never runs: a task run of a run that dies."""


@pytest.fixture
def pool(docker_engine: None, prefect_server: None) -> str:
    name = f"reconcile-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        async with get_client() as client:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=name, type="docker", base_job_template=DockerWorker.get_default_base_job_template()
                )
            )

    anyio.run(create)
    return name


@pytest.fixture
def containers() -> Iterator[list[str]]:
    started: list[str] = []
    yield started
    if started:
        subprocess.run(["docker", "rm", "-f", *started], capture_output=True)


def container(run_id: Any, *args: str) -> str:
    return subprocess.run(
        ["docker", "run", "-d", "--label", TEST_LABEL, "--label", f"{FLOW_RUN_ID_LABEL}={run_id}", *args],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


async def new_run(client: Any, pool: str, labels: dict[str, str], state: Any, pid: str | None = None) -> Any:
    flow_id = await client.create_flow(sleeper)
    deployment_id = await client.create_deployment(
        flow_id=flow_id, name=uuid.uuid4().hex[:8], work_pool_name=pool, entrypoint="x.py:sleeper"
    )
    run = await client.create_flow_run_from_deployment(deployment_id)
    await client.update_flow_run_labels(run.id, labels)
    if pid:
        await client.update_flow_run(run.id, infrastructure_pid=pid)
    await client.set_flow_run_state(run.id, state, force=True)
    return await client.read_flow_run(run.id)


async def take_lock(client: Any, run_id: Any) -> tuple[str, str]:
    """A one-slot limit held by ``run_id`` under a lease, as flows/warehouses/lock.py takes it."""
    name = f"reconcile-lock-{uuid.uuid4().hex[:8]}"
    await client.upsert_global_concurrency_limit_by_name(name, limit=1)
    response = await client.increment_concurrency_slots_with_lease(
        names=[name], slots=1, mode="concurrency", lease_duration=300,
        holder=ConcurrencyLeaseHolder(type="flow_run", id=run_id),
    )  # fmt: skip
    lease = response.json()["lease_id"]
    await client.update_flow_run_labels(run_id, {LOCK_LABEL: name, LEASE_LABEL: lease})
    return name, lease


def reconciler(client: Any, pool: str) -> Reconciler:
    return Reconciler(
        client, docker.from_env(), pool, WORKER, "FLOW_RUN_MEMORY_LIMIT=16m", logging.getLogger("test"), 0
    )


def test_a_run_whose_container_vanished_unseen_ends_crashed_and_frees_its_lock(pool: str) -> None:
    async def scenario() -> tuple[Any, Any, int, list[Any]]:
        async with get_client() as client:
            run = await new_run(client, pool, {WORKER_NAME_LABEL: WORKER}, Running(), GONE)
            task_run = await client.create_task_run(step, flow_run_id=run.id, dynamic_key="0")
            await client.set_task_run_state(task_run.id, Running(), force=True)
            name, _ = await take_lock(client, run.id)
            outcomes = await reconciler(client, pool).reconcile()
            limit = await client.read_global_concurrency_limit_by_name(name)
            return (
                await client.read_flow_run(run.id),
                await client.read_task_run(task_run.id),
                limit.active_slots,
                outcomes,
            )

    run, task_run, active, outcomes = anyio.run(scenario)
    assert run.state.type.value == "CRASHED"
    assert "the stack or the host restarted while it ran" in run.state.message
    assert [(o.run_id, o.state) for o in outcomes] == [(run.id, "CRASHED")]
    assert task_run.state.type.value == "CRASHED", "no task run may look alive in an ended run"
    assert active == 0 and run.labels[LEASE_LABEL] == "", "the dead run's lock must be free"


def test_a_task_run_whose_end_was_lost_is_ended_once_its_flow_run_has_been_over_a_while(
    pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow run Completed, its task's last event dropped (the server's database was away)."""
    from prefect.states import Completed

    from services.worker import reconcile

    async def scenario() -> tuple[list[Any], list[Any], Any, Any]:
        async with get_client() as client:
            run = await new_run(client, pool, {WORKER_NAME_LABEL: WORKER}, Running())
            task_run = await client.create_task_run(step, flow_run_id=run.id, dynamic_key="0")
            await client.set_task_run_state(task_run.id, Running(), force=True)
            await client.set_flow_run_state(run.id, Completed(), force=True)
            within_grace = await reconciler(client, pool).reconcile()
            monkeypatch.setattr(reconcile, "TASK_REPORT_GRACE", reconcile.timedelta(0))
            after_grace = await reconciler(client, pool).reconcile()
            return within_grace, after_grace, await client.read_task_run(task_run.id), run

    within_grace, after_grace, task_run, run = anyio.run(scenario)
    assert within_grace == [], "its last state may still be on its way"
    assert [(o.run_id, o.state) for o in after_grace] == [(task_run.id, "CRASHED")]
    assert task_run.state.type.value == "CRASHED"
    assert (
        task_run.state.message
        == f"Its final state never reached the server; flow run {run.name!r} ended Completed."
    )


def test_each_run_ends_as_its_container_did(pool: str, containers: list[str]) -> None:
    """Exit 0 while the server was away: Completed. Killed: Crashed, not blamed on memory. Out of
    memory: Crashed, naming the limit. Still running: untouched."""

    async def scenario() -> dict[str, Any]:
        async with get_client() as client:
            labels = {WORKER_NAME_LABEL: WORKER}
            runs = {
                name: await new_run(client, pool, labels, Running())
                for name in ("ok", "kill", "oom", "alive")
            }
            containers.append(container(runs["ok"].id, "debian:bookworm-slim", "true"))
            containers.append(container(runs["kill"].id, "--rm", "debian:bookworm-slim", "sleep", "300"))
            containers.append(
                container(
                    runs["oom"].id, "--rm", "--memory", "16m", "--memory-swap", "16m", "debian:bookworm-slim",
                    "sh", "-c", 'a=x; while true; do a="$a$a"; done',
                )
            )  # fmt: skip
            containers.append(container(runs["alive"].id, "--rm", "debian:bookworm-slim", "sleep", "300"))
            subprocess.run(["docker", "kill", containers[1]], check=True, capture_output=True)
            for _ in range(60):  # the memory hog dies within seconds; the others are settled
                ended = [c for c in containers[:3] if docker_state(c) in ("exited", "gone")]
                if len(ended) == 3:
                    break
                await anyio.sleep(0.5)
            await reconciler(client, pool).reconcile()
            return {name: await client.read_flow_run(run.id) for name, run in runs.items()}

    runs = anyio.run(scenario)
    assert runs["ok"].state.type.value == "COMPLETED", runs["ok"].state
    assert "exited with code 0" in runs["ok"].state.message and "not recorded" in runs["ok"].state.message
    assert runs["kill"].state.type.value == "CRASHED"
    assert "killed by a signal" in runs["kill"].state.message
    assert "not for exceeding its memory limit" in runs["kill"].state.message
    assert runs["oom"].state.type.value == "CRASHED"
    assert "exceeding its memory limit (FLOW_RUN_MEMORY_LIMIT=16m)" in runs["oom"].state.message
    assert runs["alive"].state.type.value == "RUNNING", "a run whose container runs is alive"


def docker_state(container_id: str) -> str:
    probe = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Status}}", container_id], capture_output=True, text=True
    )
    return probe.stdout.strip() if probe.returncode == 0 else "gone"


def test_a_run_whose_start_was_interrupted_runs_again_once_then_crashes(pool: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with get_client() as client:
            run = await new_run(client, pool, {WORKER_NAME_LABEL: WORKER}, Pending())
            reconcile = reconciler(client, pool)
            await reconcile.reconcile()
            first = await client.read_flow_run(run.id)
            await client.set_flow_run_state(run.id, Pending(), force=True)  # its worker died again
            await reconcile.reconcile()
            return first, await client.read_flow_run(run.id)

    first, second = anyio.run(scenario)
    assert first.state.type.value == "SCHEDULED" and first.labels[RESCHEDULED_LABEL] == "1"
    assert "runs again now" in first.state.message
    assert second.state.type.value == "CRASHED"


def test_runs_of_another_engine_or_worker_are_left_alone(pool: str) -> None:
    async def scenario() -> list[Any]:
        async with get_client() as client:
            other_engine = await new_run(client, pool, {ENGINE_LABEL: "another-host"}, Running(), GONE)
            other_worker = await new_run(client, pool, {WORKER_NAME_LABEL: "another-worker"}, Running(), GONE)
            assert await reconciler(client, pool).reconcile() == []
            return [await client.read_flow_run(run.id) for run in (other_engine, other_worker)]

    assert [run.state.type.value for run in anyio.run(scenario)] == ["RUNNING", "RUNNING"]


def test_a_run_that_ended_with_its_lock_still_recorded_gets_it_released(
    pool: str, containers: list[str]
) -> None:
    """E.g. crashed by the heartbeat automation: released once its container is gone, never while
    it still runs (marked Crashed while the server was away, it is still writing)."""

    async def scenario() -> tuple[Any, Any]:
        async with get_client() as client:
            labels = {WORKER_NAME_LABEL: WORKER}
            dead = await new_run(client, pool, labels, Running())
            alive = await new_run(client, pool, labels, Running())
            locks = {}
            for run in (dead, alive):
                locks[run.id], _ = await take_lock(client, run.id)
                await client.set_flow_run_state(run.id, Crashed(message="no heartbeat"), force=True)
            containers.append(container(alive.id, "--rm", "debian:bookworm-slim", "sleep", "300"))
            outcomes = await reconciler(client, pool).reconcile()
            assert [(o.run_id, o.state) for o in outcomes] == [(dead.id, "lock released")]
            result = []
            for run in (dead, alive):
                limit = await client.read_global_concurrency_limit_by_name(locks[run.id])
                result.append((limit.active_slots, await client.read_flow_run(run.id)))
            return tuple(result)

    (dead_slots, dead), (alive_slots, alive) = anyio.run(scenario)
    assert dead_slots == 0 and dead.labels[LEASE_LABEL] == ""
    assert dead.state.message == "no heartbeat", "its state is its own"
    assert alive_slots == 1 and alive.labels[LEASE_LABEL], "a live run keeps its lock"


@pytest.mark.parametrize(
    ("ended", "says"),
    [
        (ContainerExit(code=137, oom=True), "exceeding its memory limit (mem_limit=2g"),
        (ContainerExit(code=137), "killed by a signal"),
        (ContainerExit(code=143), "stopped by SIGTERM"),
        (ContainerExit(code=2), "exited with code 2"),
        (ContainerExit(code=None), "no exit was recorded"),
    ],
)
def test_every_way_a_container_ends_is_told_apart(ended: ContainerExit, says: str) -> None:
    from services.worker.exits import memory_limit_text

    assert says in ended.explain(memory_limit_text("2g"))


def test_the_lock_labels_are_the_flows_own() -> None:
    from flows.warehouses import lock

    assert (LOCK_LABEL, LEASE_LABEL) == (lock.LOCK_LABEL, lock.LEASE_LABEL)
