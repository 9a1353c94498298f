"""Shared helpers of the flow tests: the DuckDB warehouse handle, sample rows, and reading what a
flow run left on the Prefect server. (Not named helpers/conftest: test dirs share one import space.)"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)

from tests.support import REPO

SAMPLE_DIR = REPO / "flows" / "sample_data" / "shop"


@dataclass
class DuckWarehouse:
    path: Path
    data_dir: Path

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        # Same configuration as the flow's connections: dbt-duckdb keeps one open in this process.
        con = duckdb.connect(str(self.path))
        try:
            return con.sql(sql).fetchall()
        finally:
            con.close()

    def execute(self, sql: str) -> None:
        import duckdb

        con = duckdb.connect(str(self.path))
        try:
            con.execute(sql)
        finally:
            con.close()

    def count(self, relation: str) -> int:
        return int(self.query(f"select count(*) from {relation}")[0][0])

    def snapshot(self, schemas: tuple[str, ...] = ("raw_demo", "analytics_demo")) -> dict[str, list[tuple]]:
        """Every row of every table in ``schemas``, sorted: equal snapshots mean unchanged tables."""
        tables = self.query(
            "select table_schema, table_name from information_schema.tables where table_schema in "
            f"({', '.join(repr(s) for s in schemas)}) and table_type = 'BASE TABLE' order by 1, 2"
        )
        return {f"{s}.{t}": sorted(self.query(f'select * from {s}."{t}"'), key=repr) for s, t in tables}


def read_sample(day: int, table: str, sample_dir: Path = SAMPLE_DIR) -> list[dict[str, Any]]:
    """Rows of a shipped sample CSV as JSON-like dicts (ints converted)."""
    with (sample_dir / f"day_{day}" / f"{table}.csv").open() as f:
        rows = list(csv.DictReader(f))
    ints = {"id", "customer_id", "order_id", "amount_cents"}
    return [{k: int(v) if k in ints else v for k, v in row.items()} for row in rows]


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def task_runs(flow_run_id: UUID) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """Artifacts of a flow run (its tasks' included), by key."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def asset_events(prefix: str) -> list[dict[str, Any]]:
    """Asset materialization events whose asset key starts with ``prefix``."""
    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["prefect.asset.materialization"]},
                    "any_resource": {"id_prefix": [prefix]},
                },
                "limit": 50,
            },
        )
    events = response.json().get("events", [])
    return [e for e in events if e["resource"]["prefect.resource.id"].startswith(prefix)]
