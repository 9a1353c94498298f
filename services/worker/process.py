"""python -m services.worker.process --pool NAME --name NAME --limit N: the process-pool worker.

The compose service prefect-process-worker (profile ``process``, on when PROCESS_WORK_POOL_NAME is
set) runs this on the flow-run image, with flows/ mounted read-only: each flow run is a subprocess
of this container instead of a container of its own. The same deployments run here unchanged
(DEPLOY_WORK_POOL_NAME points them at this pool), with the same command as in the Docker pool
(services/flow_runner/engine.py: loads the flow from the read-only code, then works in a scratch
folder), and their settings come from .env through the container's environment.

What it adds to Prefect's ProcessWorker:
- it keeps its pool as code: created or reset to this template at start (like prefect-init does
  for the Docker pool), the command fixed, only env, labels and name left to deployments;
- each run gets an empty scratch folder of its own (/scratch/<flow run id>), removed afterwards;
- runs send heartbeats, so a run killed with this container is marked Crashed (the automation);
- new runs are picked up on the server's events, as by the Docker worker (services/worker/wakeup.py).
There is no isolation between runs and no job policy: README "Process pool".
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import anyio
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from services import contract
from services.work_pools import HEARTBEAT_SECONDS
from services.worker.wakeup import EventWakeups

# This class deliberately takes over the "process" worker type from Prefect's own class.
warnings.filterwarnings("ignore", message="Type 'PlatformProcessWorker'.*matches existing registered type")


def job_template() -> dict[str, Any]:
    """Prefect's process template with the platform's command fixed and the worker's own choices
    (command, working directory, output streaming) taken out of what a deployment may set."""
    template = ProcessWorker.get_default_base_job_template()
    job = template["job_configuration"]
    job["command"] = contract.FLOW_RUN_COMMAND
    job["working_dir"] = None
    job["stream_output"] = True
    variables = template["variables"]
    for name in ("command", "working_dir", "stream_output"):
        variables["properties"].pop(name, None)
    variables["description"] = (
        "Flow runs are subprocesses of the process worker's container (compose profile process): "
        "a deployment may set env, labels and name; the command is the platform's."
    )
    return template


def ensure_pool(client: Any, name: str, template: dict[str, Any]) -> str:
    """The process pool ``name`` exists with ``template``; what was done, for the log."""
    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
        return f"work pool {name!r} created (type process)"
    if pool.type != "process":
        sys.exit(
            f"prefect-process-worker: work pool {name!r} exists with type {pool.type!r}; set "
            "PROCESS_WORK_POOL_NAME to another name (the Docker pool is PREFECT_WORK_POOL_NAME)"
        )
    if pool.base_job_template == template:
        return f"work pool {name!r} unchanged"
    client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    return f"work pool {name!r} base job template updated"


class PlatformProcessWorker(EventWakeups, ProcessWorker):
    """ProcessWorker that gives each run its own scratch folder and heartbeats."""

    type = "process"
    scratch_root: Path = Path(contract.SCRATCH_DIR)

    async def run(
        self,
        flow_run: Any,
        configuration: ProcessJobConfiguration,
        task_status: Any = None,
    ) -> ProcessWorkerResult:
        scratch = self.scratch_root / str(flow_run.id)
        scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        configuration.working_dir = scratch
        configuration.env = {
            **configuration.env,
            # engine.py enters it once the flow is loaded from the read-only code.
            "PLATFORM_SCRATCH_DIR": str(scratch),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        }
        try:
            return await super().run(flow_run, configuration, task_status)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, required=True)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    worker = PlatformProcessWorker(
        work_pool_name=args.pool, name=args.name, limit=args.limit, create_pool_if_not_found=False
    )
    await worker.start(with_healthcheck=True)


def main() -> None:
    args = parse_args()
    with get_client(sync_client=True) as client:
        print(f"prefect-process-worker: {ensure_pool(client, args.pool, job_template())}", flush=True)

    # `docker stop` sends SIGTERM: shut down like Ctrl-C instead of dying mid-request.
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, args)
    print(f"Worker {args.name!r} stopped")


if __name__ == "__main__":
    main()
