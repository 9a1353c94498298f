"""The ``elt`` flow: ingest a source with dlt, then build the dbt project on it, in one warehouse.

    uv run python -m flows.elt            # demo source into DuckDB at $DUCKDB_PATH, ephemeral Prefect

Order of a run: parameters and warehouse settings are validated (nothing is touched before they
pass), then the run takes the warehouse's write lock (a global concurrency limit of one slot, so
two runs never write the same tables at once), ingests, transforms, and publishes a summary
artifact with row counts per mart. dlt, dbt and the drivers are imported only inside the tasks,
which keeps this module quick to import.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff

from flows.params import EltRequest
from flows.settings import EltSettings, flow_timeout_seconds
from flows.sources import SourceSettings
from flows.sources.demo import DemoSource
from flows.warehouses import Warehouse, resolve_warehouse
from flows.warehouses.lock import warehouse_lock


def with_run_settings(task: Any, timeout_seconds: int, settings: EltSettings) -> Any:
    """The task with this run's timeout and retry backoff (settings are read per run, not at import)."""
    return task.with_options(
        timeout_seconds=timeout_seconds,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_backoff_seconds),
    )


def _summary_markdown(request: EltRequest, warehouse: Warehouse, result: dict[str, Any]) -> str:
    lines = [
        f"# ELT run: {request.source.kind} source into {warehouse.kind}",
        "",
        f"Raw dataset `{request.raw_dataset}`: {sum(result['ingest']['rows_loaded'].values())} rows loaded "
        f"in {result['ingest_seconds']:.1f} s.",
    ]
    if result.get("transform"):
        lines += [
            f"dbt build into `{request.analytics_schema}` in {result['transform_seconds']:.1f} s"
            f" ({'reused: no new raw data' if result['transform_cached'] else 'rebuilt'}).",
            "",
            "| mart | rows |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {rows} |" for name, rows in sorted(result["mart_rows"].items())]
    return "\n".join(lines) + "\n"


def _transform_with_fresh_marts(
    request: EltRequest, warehouse: Warehouse, load: dict[str, Any], settings: EltSettings
) -> tuple[dict, dict, bool]:
    """Runs (or reuses) the dbt build and counts the marts' rows.

    A reused build whose tables are gone (warehouse reset) is rebuilt once with the cache refreshed.
    """
    from flows.transform import dbt_project_hash, mart_row_counts
    from flows.transform import transform as transform_task

    transform = with_run_settings(transform_task, settings.transform_timeout_seconds, settings)
    kwargs = {
        "warehouse": warehouse,
        "target": warehouse.dbt_target,
        "raw_schema": request.raw_dataset,
        "analytics_schema": request.analytics_schema,
        "raw_version": load["latest_load_id"],
        "project_hash": dbt_project_hash(),
        "full_refresh": request.full_refresh,
    }
    task = transform.with_options(refresh_cache=True) if request.full_refresh else transform
    state = task(**kwargs, return_state=True)
    summary = state.result()
    cached = state.name == "Cached"
    try:
        return summary, mart_row_counts(warehouse, summary["marts"]), cached
    except Exception:
        if not cached:
            raise
        get_run_logger().warning("Cached dbt build but its marts are missing: rebuilding")
        summary = transform.with_options(refresh_cache=True)(**kwargs)
        return summary, mart_row_counts(warehouse, summary["marts"]), False


@flow(name="elt", timeout_seconds=flow_timeout_seconds(), log_prints=True)
def elt(
    source: SourceSettings = DemoSource(),  # noqa: B008 - an immutable pydantic default, shown in the UI
    transform: bool = True,
    full_refresh: bool = False,
) -> dict[str, Any]:
    """Ingests ``source`` into raw_<kind>, then builds the dbt shop models into analytics_<kind>.

    Args:
        source: which source to load and its settings, e.g. {"kind": "demo"} (shipped sample data),
            {"kind": "rest", "base_url": "..."} or {"kind": "sql", "tables": [...]}.
        transform: run the dbt build after ingesting.
        full_refresh: drop and reload the source's raw tables and rebuild incremental models.
    """
    from flows.ingest import ingest as ingest_task

    logger = get_run_logger()
    # Everything that can be checked without touching data is checked before the lock and load.
    settings = EltSettings.from_env()
    request = EltRequest(source=source, transform=transform, full_refresh=full_refresh)
    warehouse = resolve_warehouse()
    logger.info("ELT of the %s source into %s", request.source.kind, warehouse.describe())
    ingest = with_run_settings(ingest_task, settings.ingest_timeout_seconds, settings)

    with warehouse_lock(warehouse.kind, settings.lock_timeout_seconds):
        started = time.perf_counter()
        load = ingest(request, warehouse)
        result: dict[str, Any] = {
            "source": request.source.kind,
            "warehouse": warehouse.kind,
            "ingest": load,
            "ingest_seconds": round(time.perf_counter() - started, 3),
        }
        if request.transform:
            started = time.perf_counter()
            summary, mart_rows, cached = _transform_with_fresh_marts(request, warehouse, load, settings)
            result.update(
                transform=summary,
                mart_rows=mart_rows,
                transform_cached=cached,
                transform_seconds=round(time.perf_counter() - started, 3),
            )
    create_markdown_artifact(
        key=f"elt-summary-{request.source.kind}",
        markdown=_summary_markdown(request, warehouse, result),
        description="Rows loaded and rows per mart of this ELT run",
    )
    return result


def main() -> None:
    """Runs the flow once on the demo source, on Prefect's ephemeral server unless PREFECT_API_URL is set."""
    import importlib.util

    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    missing = [
        m for m in ("dlt", "dbt.adapters.duckdb", "prefect_dbt") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise SystemExit(
            f"The flows' libraries are not installed ({', '.join(missing)} missing): run "
            "`uv sync` (it installs the default `flows` group), then `uv run python -m flows.elt`."
        )
    updates: dict[Any, Any] = {}
    # The ephemeral server takes ~30 s to start on a 2-core host, beyond Prefect's 20 s default.
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in os.environ:
        updates[PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS] = 120
    if "PREFECT_SERVER_ANALYTICS_ENABLED" not in os.environ:
        updates[PREFECT_SERVER_ANALYTICS_ENABLED] = False
    with temporary_settings(updates=updates):
        outcome = elt()
    print("rows loaded:", outcome["ingest"]["rows_loaded"])
    print("rows per mart:", outcome.get("mart_rows"))


if __name__ == "__main__":
    main()
