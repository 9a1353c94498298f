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

When a run's container dies, the worker says why in the Crashed state (out of memory, killed,
stopped: services/worker/exits.py) and frees the warehouse lock the run held at once. At start and
every 30 s it reconciles the pool's runs with the containers that exist (services/worker/reconcile.py):
a run whose container is gone gets its true final state, so none stays Running for ever.

It learns of new and cancelled runs from the server's event stream (services/worker/wakeup.py), so
it acts at once and asks the server on a timer only as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from datetime import UTC, datetime
from typing import Any, Self
from uuid import UUID

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import InfrastructureNotFound, ObjectNotFound
from prefect.states import Crashed, Failed
from prefect.utilities.engine import propose_state
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration, DockerWorkerResult

from services import contract
from services.watchdog.docker_api import DockerApi
from services.watchdog.revive import Reviver
from services.worker import reconcile
from services.worker.exits import container_exit, memory_limit_text
from services.worker.job_policy import JobPolicy, JobRefused
from services.worker.settings import flow_settings
from services.worker.wakeup import EventWakeups

# This class deliberately takes over the "docker" worker type from prefect-docker's class.
warnings.filterwarnings("ignore", message="Type 'PlatformDockerWorker'.*matches existing registered type")
CANCEL_POLL_SECONDS = 2.0  # while the event stream is down
CANCEL_SAFETY_SECONDS = 10.0  # while it is live: a Cancelling event wakes the check at once
# Killed at once: on SIGTERM the engine would propose Crashed, which Prefect accepts even after
# Cancelled and which would fire the failure alert. Like a process killed mid-run, the flow's
# `finally` blocks do not run; loads are transactional (dlt, DuckDB), so nothing is half-written.
STOP_GRACE_SECONDS = 0


class PlatformDockerWorker(EventWakeups, DockerWorker):
    """DockerWorker that enforces the job policy and stops started runs that are being cancelled."""

    _cancel_task: asyncio.Task[None] | None = None
    _reconcile_task: asyncio.Task[None] | None = None
    _reconciler: reconcile.Reconciler | None = None
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
            self.watching.add(flow_run.id)
            result = await super().run(flow_run, configuration, task_status)
            return await self._after_exit(flow_run, configuration, result)
        except JobRefused as refused:
            message = f"Refused by the platform's job policy: {refused}"
            self.get_flow_run_logger(flow_run).error(message)
            # Failed, not Crashed: the job asked for something the platform will not run.
            await propose_state(self.client, Failed(message=message), flow_run_id=flow_run.id)
            raise
        finally:
            self.watching.discard(flow_run.id)

    async def _after_exit(
        self, flow_run: FlowRun, configuration: DockerWorkerJobConfiguration, result: DockerWorkerResult
    ) -> DockerWorkerResult:
        """The container's true exit (prefect-docker may read a stale one), why it died in words for
        the Crashed state, and the warehouse lock released at once if the run still holds it."""
        since = (flow_run.start_time or flow_run.expected_start_time or datetime.now(UTC)).timestamp() - 60
        container_id = str(result.identifier).rsplit(":", 1)[-1]
        ended = await asyncio.to_thread(container_exit, self._get_client(), container_id, since)
        if ended is None or ended.code is None or ended.code == 0:
            return result
        self.exit_explanations[flow_run.id] = (
            f"{ended.explain(memory_limit_text(configuration.mem_limit))} (exit code {ended.code})"
        )
        try:
            await reconcile.release_run_lock(
                self.client, await self.client.read_flow_run(flow_run.id), self._logger
            )
        except Exception:  # the server is away: reconciling releases it once it is back
            self._logger.exception("could not release the lock of flow run %r now", flow_run.name)
        return DockerWorkerResult(status_code=ended.code, identifier=result.identifier)

    async def _propose_pending_state(self, flow_run: FlowRun) -> bool:
        """Pending only once the run names this Docker engine: a worker stopped right after Pending
        (before Prefect gives the run its worker's labels) left a run that no reconciling pass
        recognised as its own, Pending for ever. If another worker took the run first, the label is
        taken back, so this engine's reconciling leaves that run alone."""
        await self._label_engine(flow_run, mine=True)
        ready = await super()._propose_pending_state(flow_run)
        if not ready:
            await self._label_engine(flow_run, mine=False)
        return ready

    async def _label_engine(self, flow_run: FlowRun, mine: bool) -> None:
        """Names this Docker engine on the run (or no engine), so reconciling knows whose it is."""
        try:
            engine_id = (await self.reconciler()).engine_id if mine else ""
            await self.client.update_flow_run_labels(flow_run.id, {reconcile.ENGINE_LABEL: engine_id})
        except Exception:  # without it the run is still judged by its worker's name
            self._logger.exception("could not label flow run %r with its Docker engine", flow_run.name)

    async def _propose_crashed_state(self, flow_run: FlowRun, message: str, client: Any = None) -> None:
        """Crashed with the container's exit in words, and the run's task runs ended with it: a
        killed engine cannot end the task it was in, which would look alive for ever."""
        explanation = self.exit_explanations.pop(flow_run.id, None)
        await super()._propose_crashed_state(flow_run, explanation or message, client)
        try:
            run = await self.client.read_flow_run(flow_run.id)
            if run.state is not None and run.state.is_final():
                await reconcile.end_task_runs(self.client, run.id, Crashed(message=explanation or message))
        except Exception:  # the server is away: reconciling ends them once it is back
            self._logger.exception("could not end the task runs of flow run %r now", flow_run.name)

    @property
    def watching(self) -> set[UUID]:
        """Runs this worker is starting or watching: reconciling leaves them alone."""
        return self.__dict__.setdefault("_watching", set())

    def busy(self) -> set[UUID]:
        """Runs this worker is submitting or watching: nothing to reconcile there."""
        return self.watching | set(self._submitting_flow_run_ids)

    @property
    def exit_explanations(self) -> dict[UUID, str]:
        return self.__dict__.setdefault("_exit_explanations", {})

    async def reconciler(self) -> reconcile.Reconciler:
        if self._reconciler is None:
            self._reconciler = await asyncio.to_thread(
                reconcile.Reconciler,
                self.client,
                self._get_client(),
                self._work_pool_name,
                self.name,
                memory_limit_text(None),
                self._logger,
            )
        return self._reconciler

    async def _reconcile_forever(self) -> None:
        # The watchdog revives this worker when it is killed; the worker revives the watchdog.
        project = os.environ.get("COMPOSE_PROJECT_NAME", "")
        watchdog = Reviver(DockerApi(), project, frozenset({"watchdog"}), log=self._logger.warning)
        while True:
            try:
                await (await self.reconciler()).reconcile(self.busy)
                if project:
                    await asyncio.to_thread(watchdog.revive)
            except Exception:  # keep going through API or engine hiccups
                self._logger.exception("reconciling flow runs failed; retrying")
            await asyncio.sleep(reconcile.RECONCILE_SECONDS)

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
        self._reconcile_task = asyncio.create_task(self._reconcile_forever())
        return worker

    async def __aexit__(self, *exc_info: Any) -> None:
        for task in (self._cancel_task, self._reconcile_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await super().__aexit__(*exc_info)

    async def _cancel_started_runs_forever(self) -> None:
        while True:
            try:
                await self.cancel_started_runs()
            except Exception:  # keep polling through API hiccups (e.g. a server restart)
                self._logger.exception("checking for cancelled flow runs failed; retrying")
            await self.cancelling.wait(CANCEL_SAFETY_SECONDS if self.listening else CANCEL_POLL_SECONDS)

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
        # Killed at once, the run did not release its lock itself.
        await reconcile.release_run_lock(self.client, flow_run, self._logger)
