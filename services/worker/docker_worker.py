#!/usr/bin/env python3
"""PlatformDockerWorker: prefect-docker's worker, locked to the platform's job policy, plus
cancellation of runs already started.

Every container it creates passes services/worker/job_policy.py first (a refused job fails its run
naming the variable, and nothing is started) and gets the platform's settings in its environment:
the host's .env, read at each run (an edited value reaches the next run), minus the stack's own
secrets. No flow-run container mounts .env.

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
from prefect.exceptions import InfrastructureNotFound, ObjectNotFound
from prefect.states import Failed
from prefect.utilities.engine import propose_state
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration, DockerWorkerResult

from services import contract
from services.worker.job_policy import JobPolicy, JobRefused
from services.worker.settings import flow_settings

# This class deliberately takes over the "docker" worker type from prefect-docker's class.
warnings.filterwarnings("ignore", message="Type 'PlatformDockerWorker'.*matches existing registered type")
CANCEL_POLL_SECONDS = 2.0
# Killed at once: on SIGTERM the engine would propose Crashed, which Prefect accepts even after
# Cancelled and which would fire the failure alert. Like a process killed mid-run, the flow's
# `finally` blocks do not run; loads are transactional (dlt, DuckDB), so nothing is half-written.
STOP_GRACE_SECONDS = 0


class PlatformDockerWorker(DockerWorker):
    """DockerWorker that enforces the job policy and stops started runs that are being cancelled."""

    _cancel_task: asyncio.Task[None] | None = None
    policy: JobPolicy | None = None  # set by services/worker/__main__.py; None only in tests
    settings_file: str = contract.SETTINGS_FILE

    async def run(
        self,
        flow_run: FlowRun,
        configuration: DockerWorkerJobConfiguration,
        task_status: Any = None,
    ) -> DockerWorkerResult:
        try:
            if self.policy is not None:
                self.policy.check_job_variables(await self._job_variables(flow_run))
            return await super().run(flow_run, configuration, task_status)
        except JobRefused as refused:
            message = f"Refused by the platform's job policy: {refused}"
            self.get_flow_run_logger(flow_run).error(message)
            # Failed, not Crashed: the job asked for something the platform will not run.
            await propose_state(self.client, Failed(message=message), flow_run_id=flow_run.id)
            raise

    async def _job_variables(self, flow_run: FlowRun) -> dict[str, Any]:
        """What the deployment and the run ask for, merged as Prefect merges them."""
        variables: dict[str, Any] = {}
        if flow_run.deployment_id:
            with contextlib.suppress(ObjectNotFound):
                deployment = await self.client.read_deployment(flow_run.deployment_id)
                variables.update(deployment.job_variables or {})
        variables.update(flow_run.job_variables or {})
        return variables

    def _build_container_settings(
        self, docker_client: Any, configuration: DockerWorkerJobConfiguration
    ) -> dict[str, Any]:
        settings = super()._build_container_settings(docker_client, configuration)
        if self.policy is None:
            return settings
        self.policy.check(settings)
        return self.policy.harden(settings, flow_settings(self.settings_file))

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
        # Any run with a container, started or not: one cancelled while its engine was starting
        # sees Cancelling, exits, and would otherwise stay Cancelling for good.
        started = [run for run in runs if run.infrastructure_pid]
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
