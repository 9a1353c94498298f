"""flows/warehouses/lock.py: the warehouse's write lock, on the session's real Prefect server.

The lock is recorded on its holder's run and released; a waiting run names the holder and gives up
with a clear error; a lease that lapsed is taken again by its holder, and a holder whose lock was
taken by another run stops instead of writing beside it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.runtime import flow_run

from flows.warehouses import lock
from flows.warehouses.lock import LEASE_LABEL, LOCK_LABEL, warehouse_lock, warehouse_lock_name

pytestmark = pytest.mark.timeout(240)


def kind() -> str:
    """A lock of its own for each test: tests never wait on one another's."""
    return f"test{uuid.uuid4().hex[:8]}"


def active_slots(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def labels_of(run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        return dict(client.read_flow_run(run_id).labels)


def logs_of(run_id: Any, needle: str, timeout: float = 20) -> list[str]:
    """The run's log lines once one contains ``needle`` (logs are shipped in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            lines = [
                entry.message
                for entry in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            ]
        if any(needle in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


@flow
def hold(lock_kind: str, timeout: float = 10) -> dict[str, Any]:
    with warehouse_lock(lock_kind, timeout) as name:
        return {"name": name, "labels": labels_of(flow_run.id), "active": active_slots(name)}


@flow
def hold_until(lock_kind: str, release: threading.Event, held: threading.Event) -> str:
    with warehouse_lock(lock_kind, 10):
        held.set()
        release.wait(60)
    return str(flow_run.id)


def test_the_lock_is_recorded_on_its_run_and_released() -> None:
    lock_kind = kind()
    state = hold(lock_kind, return_state=True)
    inside = state.result()
    assert inside["name"] == warehouse_lock_name(lock_kind)
    assert inside["active"] == 1
    assert inside["labels"][LOCK_LABEL] == inside["name"]
    assert uuid.UUID(inside["labels"][LEASE_LABEL])  # the lease the worker would release
    assert active_slots(inside["name"]) == 0
    assert labels_of(state.state_details.flow_run_id)[LEASE_LABEL] == "", "a released lock stays recorded"


def test_a_waiting_run_names_the_holder_and_gives_up_with_a_clear_error() -> None:
    lock_kind = kind()
    release, held = threading.Event(), threading.Event()
    holder_result: list[str] = []
    holder = threading.Thread(target=lambda: holder_result.append(hold_until(lock_kind, release, held)))
    holder.start()
    try:
        assert held.wait(60), "the holder never took the lock"
        with get_client(sync_client=True) as client:
            holder_run = next(
                run
                for run in client.read_flow_runs(limit=50)
                if (run.labels or {}).get(LOCK_LABEL) == warehouse_lock_name(lock_kind)
                and run.labels.get(LEASE_LABEL)
            )
        blocked = hold(lock_kind, timeout=3, return_state=True)
        assert blocked.is_failed()
        message = blocked.message or ""
        assert "Gave up waiting for the warehouse lock" in message, message
        assert f"flow run {holder_run.name!r}" in message and "ELT_LOCK_TIMEOUT_SECONDS=3" in message, message
        waiting = logs_of(blocked.state_details.flow_run_id, "Waiting for the warehouse lock")
        assert any(
            "Waiting for the warehouse lock" in line and holder_run.name in line for line in waiting
        ), waiting
    finally:
        release.set()
        holder.join(60)
    # Released: the next run takes it at once.
    assert hold(lock_kind, timeout=3)["active"] == 1


@flow
def lose_the_lease(lock_kind: str, steal: bool) -> dict[str, Any]:
    """Holds the lock while its lease is revoked under it (as the server does once a lease lapsed);
    with ``steal``, another holder takes the freed slot before the renewal notices."""
    with warehouse_lock(lock_kind, 10) as name:
        before = labels_of(flow_run.id)[LEASE_LABEL]
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id=uuid.UUID(before))
            thief = None
            if steal:
                thief, _ = lock._try_acquire(client, name, None)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and labels_of(flow_run.id)[LEASE_LABEL] == before:
                time.sleep(0.1)
            after = labels_of(flow_run.id)[LEASE_LABEL]
            return {"before": before, "after": after, "active": active_slots(name)}
        finally:
            if thief is not None:
                with get_client(sync_client=True) as client:
                    client.release_concurrency_slots_with_lease(lease_id=thief)


def test_a_lapsed_lease_is_taken_again_by_its_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "RENEW_SECONDS", 0.3)
    outcome = lose_the_lease(kind(), steal=False)
    assert outcome["after"] != outcome["before"] and uuid.UUID(outcome["after"])
    assert outcome["active"] == 1


def test_a_holder_whose_lock_another_run_took_stops_instead_of_writing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lock, "RENEW_SECONDS", 0.3)
    state = lose_the_lease(kind(), steal=True, return_state=True)
    assert state.is_failed()
    assert "The warehouse lock was lost" in (state.message or ""), state.message
