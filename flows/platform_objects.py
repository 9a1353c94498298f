"""Server-side objects the flows rely on, created idempotently as code.

``ensure_server_objects()`` can be called by the stack's init container after ``prefect deploy``;
the ELT flow also calls ``ensure_warehouse_lock`` itself before taking the lock, so a fresh server
(or the ephemeral one of ``python -m flows.elt``) needs no manual setup.
"""

from __future__ import annotations

import contextlib

from prefect import get_client
from prefect.exceptions import ObjectAlreadyExists

WAREHOUSE_KINDS = ("duckdb", "snowflake")


def warehouse_lock_name(kind: str) -> str:
    """Global concurrency limit guarding writes to one warehouse (one slot: one writer at a time)."""
    return f"elt-warehouse-{kind}"


def ensure_warehouse_lock(kind: str) -> str:
    name = warehouse_lock_name(kind)
    # ObjectAlreadyExists: a concurrent run created it between upsert's read and its create.
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return name


def ensure_server_objects() -> None:
    for kind in WAREHOUSE_KINDS:
        ensure_warehouse_lock(kind)


if __name__ == "__main__":
    ensure_server_objects()
    print("global concurrency limits:", ", ".join(warehouse_lock_name(k) for k in WAREHOUSE_KINDS))
