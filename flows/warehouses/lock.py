"""The warehouse's write lock: one slot of the Prefect global concurrency limit
``elt-warehouse-<kind>``, held by one run at a time, and freed whenever its holder dies.

Every flow that writes a warehouse takes it through ``warehouse_lock`` (elt, dbt-build). The slot
is held under a short lease (60 s, Prefect's minimum) that a thread renews every 15 s while the run
lives, so a holder that dies without releasing it (killed, OOM, host gone) loses the slot within
about a minute even if nothing else notices. The worker frees it sooner: the lock records its
lease on the flow run (labels ``platform.lock`` and ``platform.lock-lease``), and the worker releases
that lease as soon as the run's container exits without finishing (services/worker/reconcile.py).
Leases live on the server's volume (services/server/lease_storage.py), so a server restart keeps
them: the holder goes on renewing its lease instead of the slot staying taken forever.

A run that finds the lock taken waits, saying which run holds it and for how long it has waited,
and gives up after ``timeout_seconds`` (ELT_LOCK_TIMEOUT_SECONDS) with an error naming the holder.
The limit is created by the flow on first use (idempotent), so a fresh server, or the ephemeral one
of ``python -m flows.elt``, needs no setup and the control plane never imports this code.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client
from prefect.exceptions import ObjectAlreadyExists

# Prefect's minimum lease; renewed four times per lease so one failed renewal loses nothing.
LEASE_SECONDS = 60.0
RENEW_SECONDS = 15.0
# While the server does not answer, renewals are retried this often (the lease survives restarts).
RETRY_SECONDS = 3.0
# How often a waiting run polls the lock and says what it waits for.
POLL_SECONDS = 2.0
WAIT_LOG_SECONDS = 30.0
# Labels on the holder's flow run: the worker releases this lease when the run's container dies.
LOCK_LABEL = "platform.lock"
LEASE_LABEL = "platform.lock-lease"
ACTIVE_STATES = ["RUNNING", "PENDING", "CANCELLING"]


class WarehouseLockTimeout(TimeoutError):
    """The lock stayed taken for the whole wait."""


class WarehouseLockLost(RuntimeError):
    """The lease lapsed (the server was unreachable for longer than it) and another run took the lock."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "The warehouse lock was lost: the Prefect server could not be reached to renew its lease "
            "and another run took the lock. This run stopped writing so that two runs never write "
            "the same tables at once; run it again."
        )


def warehouse_lock_name(kind: str) -> str:
    """Global concurrency limit guarding writes to one warehouse (one slot: one writer at a time)."""
    return f"elt-warehouse-{kind}"


def ensure_warehouse_lock(kind: str) -> str:
    name = warehouse_lock_name(kind)
    # ObjectAlreadyExists: a concurrent run created it between upsert's read and its create.
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return name


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.logging import get_logger, get_run_logger

    try:
        return get_run_logger()
    except Exception:  # outside a flow or task run
        return get_logger("flows.warehouses.lock")


def _current_flow_run_id() -> UUID | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context.flow_run.id if context and context.flow_run else None


def run_url(run_id: Any) -> str:
    """The run's page in the UI (PREFECT_UI_URL, which the platform sets for flow runs), or ''."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/runs/flow-run/{run_id}" if base else ""


def describe_holder(client: Any, name: str) -> str:
    """Which flow run holds lock ``name`` (its label says so), for messages; never raises."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.sorting import FlowRunSort

    try:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE_STATES))
            ),
            sort=FlowRunSort.START_TIME_ASC,
            limit=200,
        )
    except Exception:
        return "a holder the server could not name right now"
    for run in runs:
        labels = run.labels or {}
        if labels.get(LOCK_LABEL) == name and labels.get(LEASE_LABEL):
            since = f" since {run.start_time:%H:%M:%S} UTC" if run.start_time else ""
            url = run_url(run.id)
            state = run.state.name if run.state else "unknown state"
            return f"flow run {run.name!r} ({state}{since}){' ' + url if url else ''}"
    return "no running flow run (a backup, or a run that is releasing it)"


def _try_acquire(client: Any, name: str, holder_run_id: UUID | None) -> tuple[UUID | None, float]:
    """(lease id, 0) when the slot was taken, else (None, seconds the server suggests to wait)."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder

    holder = ConcurrencyLeaseHolder(type="flow_run", id=holder_run_id) if holder_run_id else None
    try:
        response = client.increment_concurrency_slots_with_lease(
            names=[name], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS, holder=holder
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 423:  # 423 Locked: taken
            raise
        return None, float(exc.response.headers.get("Retry-After") or POLL_SECONDS)
    return UUID(response.json()["lease_id"]), 0.0


def acquire(client: Any, name: str, timeout_seconds: float, holder_run_id: UUID | None) -> UUID:
    """Waits for lock ``name`` up to ``timeout_seconds``, saying what it waits for; its lease id."""
    logger = _logger()
    started = time.monotonic()
    next_report = 0.0
    waited_once = False
    while True:
        try:
            lease_id, retry_after = _try_acquire(client, name, holder_run_id)
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
                raise
            # The server is restarting: wait for it within the same bounded wait.
            logger.warning("The Prefect server does not answer (%s); still waiting for %s", exc, name)
            lease_id, retry_after = None, RETRY_SECONDS
        waited = time.monotonic() - started
        if lease_id is not None:
            after = f" after waiting {waited:.0f} s" if waited_once else ""
            logger.info("Took the warehouse lock %s%s", name, after)
            return lease_id
        waited_once = True
        if waited >= timeout_seconds:
            raise WarehouseLockTimeout(
                f"Gave up waiting for the warehouse lock {name} after {waited:.0f} s "
                f"(ELT_LOCK_TIMEOUT_SECONDS={timeout_seconds:.0f}): it is held by "
                f"{describe_holder(client, name)}. Wait for that run to finish, or cancel it, then run "
                "this one again."
            )
        if waited >= next_report:
            logger.info(
                "Waiting for the warehouse lock %s, held by %s; waited %.0f s of %.0f "
                "(ELT_LOCK_TIMEOUT_SECONDS)",
                name,
                describe_holder(client, name),
                waited,
                timeout_seconds,
            )
            next_report += WAIT_LOG_SECONDS
        time.sleep(max(0.1, min(retry_after, POLL_SECONDS, timeout_seconds - waited)))


def record_holder(client: Any, run_id: UUID | None, name: str, lease_id: UUID | None) -> None:
    """Labels the run with the lease it holds (empty once released); the worker reads them."""
    if run_id is None:
        return
    try:
        client.update_flow_run_labels(
            run_id, {LOCK_LABEL: name, LEASE_LABEL: str(lease_id) if lease_id else ""}
        )
    except Exception as exc:  # the lock still works; only the worker's early release is lost
        _logger().warning("Could not record the warehouse lock on this run: %s", exc)


class LeaseKeeper(threading.Thread):
    """Renews the lease while the run lives; rides through server restarts, and takes the lock again
    if the lease lapsed meanwhile. If another run took it, stops the holder's thread with
    WarehouseLockLost rather than let two runs write at once."""

    def __init__(self, name: str, lease_id: UUID, run_id: UUID | None) -> None:
        super().__init__(name=f"warehouse-lock-{name}", daemon=True)
        self.lock_name = name
        self.lease_id = lease_id
        self.run_id = run_id
        self.holder_thread = threading.get_ident()
        self.stopped = threading.Event()
        self.lost = False
        self.logger = _logger()

    def run(self) -> None:
        failing_since: float | None = None
        with get_client(sync_client=True) as client:
            while not self.stopped.wait(RETRY_SECONDS if failing_since else RENEW_SECONDS):
                try:
                    client.renew_concurrency_lease(lease_id=self.lease_id, lease_duration=LEASE_SECONDS)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 410:  # 410 Gone: the lease lapsed and was freed
                        failing_since = self._failed(failing_since, exc)
                        continue
                    if not self._take_again(client):
                        return
                except Exception as exc:  # server unreachable: keep trying, the lease survives it
                    failing_since = self._failed(failing_since, exc)
                    continue
                if failing_since is not None:
                    self.logger.info(
                        "Renewed the warehouse lock %s again after %.0f s without the server",
                        self.lock_name,
                        time.monotonic() - failing_since,
                    )
                failing_since = None

    def _failed(self, since: float | None, exc: Exception) -> float:
        if since is None:
            self.logger.warning(
                "Could not renew the warehouse lock %s (%s); retrying every %.0f s",
                self.lock_name,
                exc,
                RETRY_SECONDS,
            )
            return time.monotonic()
        return since

    def _take_again(self, client: Any) -> bool:
        try:
            lease_id, _ = _try_acquire(client, self.lock_name, self.run_id)
        except Exception as exc:
            self._failed(None, exc)
            return True  # the next renewal tries again (and gets 410 again until the server answers)
        if lease_id is not None:
            self.logger.warning(
                "The lease of the warehouse lock %s lapsed while the server was away; took it again",
                self.lock_name,
            )
            self.lease_id = lease_id
            record_holder(client, self.run_id, self.lock_name, lease_id)
            return True
        self.lost = True
        self.logger.error(
            "The warehouse lock %s was lost while the server was away and is now held by %s; "
            "stopping this run",
            self.lock_name,
            describe_holder(client, self.lock_name),
        )
        # Raised in the holder's thread at its next Python instruction.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self.holder_thread), ctypes.py_object(WarehouseLockLost)
        )
        return False

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def release(client: Any, lease_id: UUID) -> None:
    """Frees the slot held under ``lease_id``; a lease already released or lapsed is a no-op."""
    client.release_concurrency_slots_with_lease(lease_id=lease_id)


@contextlib.contextmanager
def warehouse_lock(kind: str, timeout_seconds: float) -> Iterator[str]:
    """Holds the write lock of warehouse ``kind`` for the block; yields the lock's name.

    Raises WarehouseLockTimeout after ``timeout_seconds`` of waiting, naming the run that holds it.
    """
    name = ensure_warehouse_lock(kind)
    run_id = _current_flow_run_id()
    with get_client(sync_client=True) as client:
        lease_id = acquire(client, name, timeout_seconds, run_id)
        record_holder(client, run_id, name, lease_id)
        keeper = LeaseKeeper(name, lease_id, run_id)
        keeper.start()
        try:
            yield name
        finally:
            keeper.stop()
            try:
                release(client, keeper.lease_id)
            except Exception as exc:  # the lease lapses within LEASE_SECONDS anyway
                _logger().warning("Could not release the warehouse lock %s now (%s)", name, exc)
            record_holder(client, run_id, name, None)
