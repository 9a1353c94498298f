"""Runs that nothing watches any more get their true final state; locks their holders left are freed.

The worker runs this when it starts and every RECONCILE_SECONDS after. A flow run of the pool that
is Running or Pending but whose container is gone (the host rebooted, the stack went down with the
run in flight, the worker was down when the container died) would otherwise stay that way for ever,
holding its deployment's one-at-a-time slot and maybe the warehouse lock, and the schedule behind
it would be dead. For each such run:

- its container exited and the engine's event log says how (services/worker/exits.py): exit 0 means
  the flow finished but could not report it (the server was away), so it ends Completed, saying
  so; any other exit ends it Crashed with the reason (out of memory, killed, stopped);
- no exit was recorded (the host or engine restarted): Crashed, "the stack or host restarted";
- Pending without ever getting a container (the worker died while starting it): Scheduled again
  once, so the run still happens; a second time it ends Crashed.

Ending a run through the API frees its deployment slot (Prefect's orchestration does that). The
warehouse lock is a global concurrency limit whose lease the holder records on its flow run (labels
``platform.lock-lease``, flows/warehouses/lock.py): any run that ended with a lease still recorded
(killed mid-ELT, crashed here or by an automation) gets it released once its container is gone,
so the next ELT never waits for a dead holder, nor starts beside a live one. Only runs of this
Docker engine are judged: a run whose worker labels name another engine (or another worker) is
left to that worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from services.worker.exits import FLOW_RUN_ID_LABEL, ContainerExit, container_exit, exit_from_events

# Labels of flows/warehouses/lock.py (the control plane never imports flows/; a test keeps them equal).
LOCK_LABEL = "platform.lock"
LEASE_LABEL = "platform.lock-lease"
# Label the worker puts on each run it starts: the Docker engine (its ID) the container runs on.
ENGINE_LABEL = "platform.docker-engine"
RESCHEDULED_LABEL = "platform.rescheduled"
WORKER_NAME_LABEL = "prefect.worker.name"  # Prefect's own, set when a worker takes the run
RECONCILE_SECONDS = 30.0
# A container that died this recently is still being reported by its engine or the worker's watch.
GRACE_SECONDS = 15.0
# How long after its flow run ended a task run may still be Running: its last state, sent as an
# event, is being written.
TASK_REPORT_GRACE = timedelta(minutes=2)
# How far back to look for runs that ended with a lock lease still recorded.
ENDED_LOOKBACK = timedelta(hours=24)
PAGE = 200


@dataclass(frozen=True)
class Outcome:
    """What reconciling did to one run (for logs and tests)."""

    run_id: UUID
    run_name: str
    state: str  # the state type it was moved to, or "lock released"
    message: str


def is_terminal(run: Any) -> bool:
    return run.state is not None and run.state.is_final()


def lease_of(run: Any) -> UUID | None:
    value = (run.labels or {}).get(LEASE_LABEL) or ""
    try:
        return UUID(value)
    except ValueError:
        return None


async def release_run_lock(client: Any, run: Any, logger: logging.Logger | None = None) -> bool:
    """Frees the warehouse lock ``run`` still holds (its recorded lease); True if there was one."""
    lease_id = lease_of(run)
    if lease_id is None:
        return False
    await client.release_concurrency_slots_with_lease(lease_id=lease_id)
    await client.update_flow_run_labels(run.id, {LEASE_LABEL: ""})
    if logger:
        logger.info(
            "Released the warehouse lock %s held by flow run %r (lease %s)",
            (run.labels or {}).get(LOCK_LABEL, "?"),
            run.name,
            lease_id,
        )
    return True


async def end_task_runs(client: Any, run_id: Any, state: Any) -> None:
    """Task runs left Running or Pending in a run that ended get ``state`` too, so none looks alive."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )

    task_runs = await client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
        task_run_filter=TaskRunFilter(
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=["RUNNING", "PENDING"]))
        ),
        limit=PAGE,
    )
    for task_run in task_runs:
        await client.set_task_run_state(task_run.id, state, force=True)


def never_started(run: Any, exit_: ContainerExit) -> bool:
    """Pending, and no container was ever seen for it: its start was interrupted."""
    pending = run.state is not None and run.state.is_pending()
    return pending and exit_.code is None and not run.infrastructure_pid


class Reconciler:
    """Reconciles the runs of one pool on one Docker engine; see the module docstring."""

    def __init__(
        self,
        client: Any,
        docker_client: Any,
        pool: str,
        worker_name: str,
        memory_limit: str,
        logger: logging.Logger,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self.client = client
        self.docker = docker_client
        self.pool = pool
        self.worker_name = worker_name
        self.memory_limit = memory_limit
        self.logger = logger
        self.grace_seconds = grace_seconds
        self.engine_id: str = docker_client.info()["ID"]
        self._last_pass: datetime | None = None

    def owns(self, run: Any) -> bool:
        """Whether this engine ran (or was starting) ``run``: another host's runs are not ours."""
        labels = run.labels or {}
        if labels.get(ENGINE_LABEL):  # empty: a worker that lost the race for it took it back
            return labels[ENGINE_LABEL] == self.engine_id
        return labels.get(WORKER_NAME_LABEL) == self.worker_name

    async def active_runs(self) -> list[Any]:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            WorkPoolFilter,
            WorkPoolFilterName,
        )

        return await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["RUNNING", "PENDING"]))
            ),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self.pool])),
            limit=PAGE,
        )

    async def ended_runs_since(self, since: datetime) -> list[Any]:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterEndTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
            WorkPoolFilter,
            WorkPoolFilterName,
        )

        return await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=["COMPLETED", "FAILED", "CRASHED", "CANCELLED"])
                ),
                end_time=FlowRunFilterEndTime(after_=since),
            ),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self.pool])),
            limit=PAGE,
        )

    def containers_by_run(self) -> dict[str, str]:
        """flow run id -> container id, for the flow-run containers this engine still has."""
        containers = self.docker.api.containers(all=True, filters={"label": FLOW_RUN_ID_LABEL})
        return {c["Labels"][FLOW_RUN_ID_LABEL]: c["Id"] for c in containers}

    def running_containers(self) -> set[str]:
        """Run ids whose flow-run container is running on this engine right now."""
        containers = self.docker.api.containers(filters={"label": FLOW_RUN_ID_LABEL, "status": "running"})
        return {c["Labels"][FLOW_RUN_ID_LABEL] for c in containers}

    def exit_of(
        self, run: Any, containers: dict[str, str], died: dict[str, ContainerExit]
    ) -> ContainerExit | None:
        """How the run's container ended (None: it still runs). ``died``: exits by run id."""
        container_id = containers.get(str(run.id))
        if container_id is None and run.infrastructure_pid:
            container_id = str(run.infrastructure_pid).rsplit(":", 1)[-1]
        if container_id is None:
            return died.get(str(run.id), ContainerExit(code=None))
        since = (run.start_time or run.expected_start_time or datetime.now(UTC)).timestamp() - 60
        return container_exit(self.docker, container_id, since)

    def deaths_by_run(self, since: datetime) -> dict[str, ContainerExit]:
        """Exits of flow-run containers recorded in the engine's event log since ``since``, by run id."""
        return exit_from_events(
            self.docker, {"label": [FLOW_RUN_ID_LABEL]}, since.timestamp(), by_label=FLOW_RUN_ID_LABEL
        )

    async def reconcile(self, busy: Callable[[], Iterable[UUID]] = tuple) -> list[Outcome]:
        """One pass; ``busy()``: the runs this worker is starting or watching right now (asked
        again before each run is judged: a pass can take a while on a loaded host)."""
        now = datetime.now(UTC)
        since = self._last_pass - timedelta(minutes=5) if self._last_pass else now - ENDED_LOOKBACK
        outcomes: list[Outcome] = []
        runs = [run for run in await self.active_runs() if self.owns(run)]
        if runs:
            # Docker's API is blocking: off the worker's event loop (it sends the heartbeats).
            died = await asyncio.to_thread(self.deaths_by_run, now - ENDED_LOOKBACK)
            for listed in runs:
                if listed.id in set(busy()):
                    continue
                # Judged on its state and containers now, not as they were when the pass began.
                run = await self.client.read_flow_run(listed.id)
                if run.state is None or run.state.type.value not in ("RUNNING", "PENDING"):
                    continue
                containers = await asyncio.to_thread(self.containers_by_run)
                exit_ = await asyncio.to_thread(self.exit_of, run, containers, died)
                if listed.id in set(busy()):
                    continue
                outcome = await self._settle(run, exit_)
                if outcome:
                    outcomes.append(outcome)
        ended = [run for run in await self.ended_runs_since(since) if self.owns(run)]
        holding = [run for run in ended if lease_of(run)]
        if holding:
            # Marked ended while its container still runs (e.g. crashed for missing heartbeats while
            # the server was away): it still writes, so its lock stays until the container ends.
            alive = await asyncio.to_thread(self.running_containers)
            for run in holding:
                if str(run.id) not in alive and await release_run_lock(self.client, run, self.logger):
                    outcomes.append(Outcome(run.id, run.name, "lock released", ""))
        outcomes += await self._end_orphan_task_runs(ended, now)
        self._last_pass = now
        return outcomes

    async def _end_orphan_task_runs(self, ended_runs: list[Any], now: datetime) -> list[Outcome]:
        """Task runs still Running or Pending in ``ended_runs`` (this engine's, ended since the last
        pass) that ended over TASK_REPORT_GRACE ago: their final state was lost on its way (task
        states travel as events; the server drops them when its database stays away too long), so
        they would look alive for ever."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            TaskRunFilter,
            TaskRunFilterState,
            TaskRunFilterStateType,
        )
        from prefect.states import Crashed

        ended = {
            run.id: run
            for run in ended_runs
            if run.end_time is not None and now - run.end_time > TASK_REPORT_GRACE
        }
        if not ended:
            return []
        orphans = await self.client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ended))),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=["RUNNING", "PENDING"]))
            ),
            limit=PAGE,
        )
        outcomes = []
        for task_run in orphans:
            run = ended[task_run.flow_run_id]
            ended_as = run.state.name if run.state else "ended"
            message = f"Its final state never reached the server; flow run {run.name!r} ended {ended_as}."
            await self.client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
            self.logger.warning("Task run %r of flow run %r: %s", task_run.name, run.name, message)
            outcomes.append(Outcome(task_run.id, task_run.name, "CRASHED", message))
        return outcomes

    async def _settle(self, run: Any, exit_: ContainerExit | None) -> Outcome | None:
        from prefect.states import Completed, Crashed, Scheduled

        if exit_ is None:
            return None  # its container runs: the run is alive
        if exit_.at is not None and time.time() - exit_.at < self.grace_seconds:
            return None  # just died: its own report (or the worker's) is on its way
        if run.state and (datetime.now(UTC) - run.state.timestamp).total_seconds() < self.grace_seconds:
            return None  # just moved (e.g. Pending while its worker starts the container)
        if never_started(run, exit_) and not (run.labels or {}).get(RESCHEDULED_LABEL):
            message = "Rescheduled: its worker stopped before the run's container started; it runs again now."
            state = Scheduled(scheduled_time=datetime.now(UTC), message=message)
            await self.client.update_flow_run_labels(run.id, {RESCHEDULED_LABEL: "1"})
        elif exit_.code == 0 and not exit_.oom:
            when = datetime.fromtimestamp(exit_.at, UTC).strftime("%H:%M:%S UTC") if exit_.at else "unseen"
            message = (
                f"Finished: its container exited with code 0 (at {when}) while the Prefect server could "
                "not be reached, so the run could not report it; its result and last logs were not "
                "recorded."
            )
            state = Completed(message=message)
        else:
            message = f"Crashed: {exit_.explain(self.memory_limit)}"
            state = Crashed(message=message)
        result = await self.client.set_flow_run_state(run.id, state, force=False)
        accepted = getattr(result.status, "value", result.status) == "ACCEPT"
        if not accepted:  # it changed meanwhile (e.g. it reported at last): its own state stands
            self.logger.info("Flow run %r was not changed: %s", run.name, result.details)
            return None
        if state.is_final():
            await end_task_runs(self.client, run.id, Crashed(message=message))
        fresh = await self.client.read_flow_run(run.id)
        await release_run_lock(self.client, fresh, self.logger)
        self.logger.warning("Flow run %r (%s): %s", run.name, state.type.value, message)
        return Outcome(run.id, run.name, state.type.value, message)
