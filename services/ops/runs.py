"""Flow runs and slots around a restore or an upgrade.

After a restore, nothing runs (the worker was stopped and no flow-run container was left), yet the
restored database may say otherwise: runs that were Running when the backup was taken, and
concurrency slots held then (the warehouse lock that the backup itself held, deployments'
one-at-a-time slots). Prefect 3.8 keeps slot leases in the server's memory, so nothing would ever
release them: the ELT would wait for its lock forever. ``settle`` marks such runs Crashed, with a
message naming the restore, and frees every held slot.
"""

from __future__ import annotations

from typing import Any

from services.ops import log

UNFINISHED = ["RUNNING", "PENDING", "CANCELLING"]
PAGE = 200


def _unfinished_flow_runs(client: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    state_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED)))
    runs: list[Any] = []
    while True:
        page = client.read_flow_runs(flow_run_filter=state_filter, limit=PAGE, offset=len(runs))
        runs += page
        if len(page) < PAGE:
            return runs


def _unfinished_task_runs(client: Any, flow_run_ids: list[Any]) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )

    if not flow_run_ids:
        return []
    return client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=UNFINISHED))),
        limit=PAGE,
    )


def settle(client: Any, reason: str) -> dict[str, int]:
    """Crashes unfinished runs and frees held slots; returns what it changed."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.states import Crashed

    message = f"Interrupted: {reason}. This run was not running after it, so it cannot finish."
    flow_runs = _unfinished_flow_runs(client)
    task_runs = _unfinished_task_runs(client, [run.id for run in flow_runs])
    for task_run in task_runs:
        client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    for run in flow_runs:
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        log(f"flow run {run.name} ({run.state_type.value} at backup time) marked Crashed")
    freed = 0
    offset = 0
    while True:
        limits = client.read_global_concurrency_limits(limit=PAGE, offset=offset)
        for limit in limits:
            if limit.active_slots:
                client.update_global_concurrency_limit(
                    limit.name, GlobalConcurrencyLimitUpdate(active_slots=0)
                )
                log(f"concurrency limit {limit.name}: {limit.active_slots} stale slot(s) freed")
                freed += 1
        offset += len(limits)
        if len(limits) < PAGE:
            break
    for tag_limit in client.read_concurrency_limits(limit=PAGE, offset=0):
        if tag_limit.active_slots:
            client.reset_concurrency_limit_by_tag(tag_limit.tag)
            freed += 1
    return {"flow_runs_crashed": len(flow_runs), "task_runs_crashed": len(task_runs), "limits_freed": freed}


def run_deployment_and_wait(name: str, timeout_seconds: float) -> tuple[str, str]:
    """Runs deployment ``flow/deployment`` and waits for it; returns (state type, state message)."""
    from prefect.deployments import run_deployment

    run = run_deployment(name, timeout=timeout_seconds, tags=["platform-ops"])
    state = run.state
    state_type = state.type.value if state else "UNKNOWN"
    return state_type, (state.message or "") if state else ""
