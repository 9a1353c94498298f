#!/usr/bin/env python3
"""PlatformDockerWorker: prefect-docker's worker, plus cancellation of runs already started.

Flow-run containers run the Prefect engine directly (`python -m prefect.engine`, the command of
services/work_pools/docker.json) instead of `prefect flow-run execute`, which halves the time from trigger
to Running. In Prefect 3.8 that wrapper process is what watches a *started* run for cancellation;
the worker itself only cancels runs that have not started. So this worker also polls for Cancelling
runs of its pool that have a container, marks the run Cancelled and kills the container. Polling
the pool, not a per-process list, also covers runs started before a worker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from typing import Any, Self

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import InfrastructureNotFound
from prefect_docker.worker import DockerWorker

# This class deliberately takes over the "docker" worker type from prefect-docker's class.
warnings.filterwarnings("ignore", message="Type 'PlatformDockerWorker'.*matches existing registered type")
CANCEL_POLL_SECONDS = 2.0
# Killed at once: on SIGTERM the engine would propose Crashed, which Prefect accepts even after
# Cancelled and which would fire the failure alert. Like a process killed mid-run, the flow's
# `finally` blocks do not run; loads are transactional (dlt, DuckDB), so nothing is half-written.
STOP_GRACE_SECONDS = 0


class PlatformDockerWorker(DockerWorker):
    """DockerWorker that also stops the containers of started runs that are being cancelled."""

    _cancel_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        worker = await super().__aenter__()
        self._cancel_task = asyncio.create_task(self._cancel_started_runs_forever())
        return worker

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._cancel_task is not None:
            self._cancel_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cancel_task
        await super().__aexit__(*exc_info)

    async def _cancel_started_runs_forever(self) -> None:
        while True:
            try:
                await self.cancel_started_runs()
            except Exception:  # keep polling through API hiccups (e.g. a server restart)
                self._logger.exception("checking for cancelled flow runs failed; retrying")
            await asyncio.sleep(CANCEL_POLL_SECONDS)

    async def cancel_started_runs(self) -> list[FlowRun]:
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING]))
            ),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self._work_pool_name])),
        )
        started = [run for run in runs if run.start_time is not None and run.infrastructure_pid]
        for run in started:
            await self._stop_and_mark_cancelled(run)
        return started

    async def _stop_and_mark_cancelled(self, flow_run: FlowRun) -> None:
        logger = self.get_flow_run_logger(flow_run)
        await self._mark_flow_run_as_cancelled(flow_run, state_updates={"message": "Cancelled by user."})
        logger.info("Flow run '%s' cancelled; stopping its container", flow_run.name)
        try:
            await self.kill_infrastructure(
                flow_run.infrastructure_pid,  # type: ignore[arg-type]
                configuration=None,  # type: ignore[arg-type]  # unused by the Docker worker
                grace_seconds=STOP_GRACE_SECONDS,
            )
        except InfrastructureNotFound:
            logger.info("The flow-run container is already gone")
