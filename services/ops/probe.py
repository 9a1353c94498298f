"""The facts ./scripts/status reports from inside the stack, as one JSON object.

Raw facts only (ages in seconds, counts, names); the host command judges them against its
thresholds, so the judging is testable without a stack. Every part is collected on its own: an
API failure still leaves the volume's figures, and says what failed.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from services.ops.data_volume import leftovers

PAGE = 200
LISTED = 20  # late/unfinished runs listed by name; the count is always complete


def _age(now: datetime, moment: datetime | None) -> float | None:
    return round((now - moment).total_seconds(), 1) if moment else None


def _runs(client: Any, flow_run_filter: Any, **kwargs: Any) -> list[Any]:
    runs: list[Any] = []
    while True:
        page = client.read_flow_runs(flow_run_filter=flow_run_filter, limit=PAGE, offset=len(runs), **kwargs)
        runs += page
        if len(page) < PAGE or len(runs) >= 10 * PAGE:
            return runs


def _describe(run: Any, now: datetime, deployments: dict[Any, str]) -> dict[str, Any]:
    return {
        "name": run.name,
        "id": str(run.id),
        "deployment": deployments.get(run.deployment_id, ""),
        "state": run.state_name,
        "state_age_seconds": _age(now, run.state.timestamp if run.state else None),
        "expected_start_age_seconds": _age(now, run.expected_start_time),
        "start_age_seconds": _age(now, run.start_time),
    }


def api_facts(client: Any, pool_name: str, now: datetime) -> dict[str, Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    facts: dict[str, Any] = {}
    pool = client.read_work_pool(pool_name)
    facts["work_pool"] = {
        "name": pool.name,
        "status": pool.status.value if pool.status else None,
        "paused": pool.is_paused,
    }
    facts["workers"] = [
        {
            "name": worker.name,
            "status": worker.status.value if worker.status else None,
            "heartbeat_age_seconds": _age(now, worker.last_heartbeat_time),
        }
        for worker in client.read_workers_for_work_pool(pool_name)
    ]
    flows = {flow.id: flow.name for flow in client.read_flows(limit=PAGE)}
    deployments = {d.id: f"{flows.get(d.flow_id, '?')}/{d.name}" for d in client.read_deployments(limit=PAGE)}

    started_recently = FlowRunFilter(
        start_time=FlowRunFilterStartTime(after_=now - timedelta(hours=24)),
        state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=["SCHEDULED"])),
    )
    recent = _runs(client, started_recently)
    by_state: dict[str, int] = {}
    for run in recent:
        by_state[run.state_name or "?"] = by_state.get(run.state_name or "?", 0) + 1
    facts["runs_24h"] = dict(sorted(by_state.items()))

    late = _runs(client, FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))))
    facts["late_runs"] = {"count": len(late), "runs": [_describe(r, now, deployments) for r in late[:LISTED]]}
    unfinished_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["PENDING", "RUNNING", "CANCELLING"]))
    )
    unfinished = _runs(client, unfinished_filter)
    facts["unfinished_runs"] = [_describe(r, now, deployments) for r in unfinished[: 10 * LISTED]]

    last_runs = []
    not_scheduled = FlowRunFilterState(type=FlowRunFilterStateType(not_any_=["SCHEDULED"]))
    for deployment_id, name in sorted(deployments.items(), key=lambda item: item[1]):
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=not_scheduled),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        last = _describe(runs[0], now, deployments) if runs else None
        last_runs.append({"deployment": name, "last_run": last})
    facts["last_runs"] = last_runs
    return facts


def volume_facts(data_dir: Path) -> dict[str, Any]:
    used = 0
    for folder, _dirs, names in os.walk(data_dir):
        for name in names:
            try:
                used += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue  # removed while walking
    disk = shutil.disk_usage(data_dir)
    return {
        "bytes": used,
        "disk_free_bytes": disk.free,
        "disk_total_bytes": disk.total,
        "restore_leftovers": leftovers(data_dir),
    }


def collect(data_dir: Path, pool_name: str) -> dict[str, Any]:
    import prefect
    from prefect import get_client

    facts: dict[str, Any] = {"prefect_version": prefect.__version__}
    now = datetime.now(timezone.utc)  # noqa: UP017 - kept like the host code
    try:
        with get_client(sync_client=True) as client:
            facts["server_version"] = client.api_version()
            facts.update(api_facts(client, pool_name, now))
        facts["api_error"] = None
    except Exception as exc:
        facts["api_error"] = f"{type(exc).__name__}: {exc}"[:500]
    try:
        facts["data_volume"] = volume_facts(data_dir)
    except OSError as exc:
        facts["data_volume"] = {"error": str(exc)}
    return facts
