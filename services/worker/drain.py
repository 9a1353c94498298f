"""python -m services.worker.drain --seconds N: lets this stack's flow runs finish, then stops the rest.

Run by ./scripts/down (in a one-off container of the worker's service, once the worker is stopped,
so no run starts meanwhile): waits up to N seconds for the flow-run containers on the stack's
network, saying which runs it waits for, then marks each run still going Cancelled with a message
saying why, frees the warehouse lock it held and removes its container. No flow-run container
outlives the stack, and no run is left Running without one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

from services.worker.exits import FLOW_RUN_ID_LABEL
from services.worker.reconcile import end_task_runs, release_run_lock

PROGRESS_SECONDS = 10.0
POLL_SECONDS = 1.0


def log(message: str) -> None:
    print(f"down: {message}", flush=True)


def flow_run_containers(docker_client: Any, network: str) -> list[Any]:
    """Running flow-run containers on ``network`` (this stack's, whatever their job's labels)."""
    return docker_client.containers.list(filters={"label": FLOW_RUN_ID_LABEL, "network": network})


def describe(container: Any) -> str:
    labels = container.labels
    deployment = labels.get("io.prefect.deployment-name")
    flow = labels.get("io.prefect.flow-name", "?")
    name = f"{flow}/{deployment}" if deployment else flow
    return f"{name} {labels.get('io.prefect.flow-run-name', container.name)!r}"


def wait(docker_client: Any, network: str, seconds: float) -> list[Any]:
    """Waits up to ``seconds`` for the stack's flow runs to end; returns the containers still running."""
    deadline = time.monotonic() + seconds
    next_report = 0.0
    while True:
        running = flow_run_containers(docker_client, network)
        left = deadline - time.monotonic()
        if not running or left <= 0:
            return running
        if time.monotonic() >= next_report:
            names = ", ".join(describe(c) for c in running)
            log(f"{len(running)} flow run(s) still running ({names}); waiting up to {left:.0f} s more")
            next_report = time.monotonic() + PROGRESS_SECONDS
        time.sleep(POLL_SECONDS)


async def cancel(containers: list[Any], seconds: float) -> int:
    """Marks the runs of ``containers`` Cancelled, frees their locks, kills the containers."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    message = (
        f"Cancelled by ./scripts/down: the stack was stopped while this run was still going after "
        f"{seconds:.0f} s of waiting (DRAIN_SECONDS). Run it again once the stack is up."
    )
    import docker.errors

    cancelled = 0
    async with get_client() as client:
        for container in containers:
            run_id = container.labels[FLOW_RUN_ID_LABEL]
            try:
                container.reload()
                still_running = container.status == "running"
            except docker.errors.NotFound:  # ended and removed since the wait looked
                still_running = False
            if not still_running:
                log(f"{describe(container)} finished meanwhile")
                continue
            try:
                # Before the kill: a run killed first could still report a crash.
                await client.set_flow_run_state(run_id, Cancelled(message=message), force=True)
                await end_task_runs(client, run_id, Cancelled(message=message))
                await release_run_lock(client, await client.read_flow_run(run_id))
                cancelled += 1
            except Exception as exc:  # the server is gone: the next start's reconcile settles it
                log(f"could not mark {describe(container)} Cancelled ({exc}); it ends Crashed at the next up")
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.kill()  # it may end on its own meanwhile: gone is what we want
            log(f"{describe(container)} cancelled and its container stopped")
    return cancelled


def main(argv: list[str] | None = None) -> None:
    import docker

    parser = argparse.ArgumentParser(prog="python -m services.worker.drain", description=__doc__)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    network = os.environ.get("COMPOSE_PROJECT_NAME", "")
    if not network:
        sys.exit("down: COMPOSE_PROJECT_NAME is not set")
    docker_client = docker.from_env()
    running = flow_run_containers(docker_client, network)
    if not running:
        log("no flow run in flight")
        return
    log(f"letting {len(running)} flow run(s) finish, for up to {args.seconds:.0f} s (DRAIN_SECONDS)")
    left = wait(docker_client, network, args.seconds)
    finished = len(running) - len(left)
    cancelled = asyncio.run(cancel(left, args.seconds)) if left else 0
    log(f"{finished} flow run(s) finished, {cancelled} cancelled")


if __name__ == "__main__":
    main()
