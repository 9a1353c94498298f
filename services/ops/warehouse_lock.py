"""The warehouse's write lock, as the ELT takes it: one slot of the global concurrency limit
``elt-warehouse-<kind>`` (flows/warehouses/lock.py names it; a test keeps the two in step).

Holding the slot means no ELT run writes the warehouse meanwhile: a run that wants it waits (up to
its ELT_LOCK_TIMEOUT_SECONDS), and the backup waits for a run in progress to finish. Prefect renews
the slot's lease while it is held, so a long copy keeps it, and a killed holder loses it when the
lease expires instead of blocking the ELT forever.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

LOCK_PREFIX = "elt-warehouse-"


def warehouse_lock_name(kind: str) -> str:
    return f"{LOCK_PREFIX}{kind}"


@contextlib.contextmanager
def holding_warehouse_lock(kind: str, timeout_seconds: float) -> Iterator[str]:
    """Holds the lock of warehouse ``kind``; raises TimeoutError after ``timeout_seconds`` of waiting."""
    from prefect import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = warehouse_lock_name(kind)
    # Created with one slot when missing, exactly as the ELT does (no ELT may have run yet).
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    # A 60 s lease (renewed while held), like the ELT's: a killed backup frees the slot within a minute.
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, lease_duration=60, strict=True):
        yield name
