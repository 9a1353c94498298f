"""The warehouse's write lock: a Prefect global concurrency limit of one slot per warehouse kind.

Created by the flow itself on first use (idempotent), so a fresh server, or the ephemeral one of
``python -m flows.elt``, needs no setup and the control plane never imports this code.
"""

from __future__ import annotations

import contextlib

from prefect import get_client
from prefect.exceptions import ObjectAlreadyExists


def warehouse_lock_name(kind: str) -> str:
    """Global concurrency limit guarding writes to one warehouse (one slot: one writer at a time)."""
    return f"elt-warehouse-{kind}"


def ensure_warehouse_lock(kind: str) -> str:
    name = warehouse_lock_name(kind)
    # ObjectAlreadyExists: a concurrent run created it between upsert's read and its create.
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return name
