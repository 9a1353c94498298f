"""Runs a dlt source into the warehouse as one Prefect task, and publishes what it loaded.

dlt's working folder is a fresh temporary directory per run: the incremental state and schema are
restored from the destination (dlt's ``_dlt_pipeline_state`` table) at the start of every run, so
they survive container teardown and nothing is written next to the code. A failed run leaves no
half-processed package behind to be replayed by the next one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.credentials import CredentialResolver
from flows.params import EltRequest
from flows.retry import exception_chain, retry_on_transient_error
from flows.sources.errors import MalformedSourceDataError
from flows.warehouse import Warehouse

# dlt phones home by default; flow runs must not (and may have no internet at all).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
# Arrow-backed sources (demo, sql) get dlt's _dlt_load_id column too: the dbt models need it.
os.environ.setdefault("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID", "true")

# New tables and columns are absorbed (schema evolution); a value that does not fit its column's
# type is a malformed record and fails the run instead of creating a variant column.
SCHEMA_CONTRACT = {"tables": "evolve", "columns": "evolve", "data_type": "freeze"}
INGEST_TIMEOUT_SECONDS = int(os.environ.get("ELT_INGEST_TIMEOUT_SECONDS", "3600"))
RETRY_BACKOFF_SECONDS = float(os.environ.get("ELT_RETRY_BACKOFF_SECONDS", "10"))


@dataclass
class LoadSummary:
    source: str
    dataset: str
    destination: str
    load_ids: list[str]
    rows_loaded: dict[str, int]  # rows extracted and merged this run, per table
    table_rows: dict[str, int]  # rows in each table after the load
    new_columns: dict[str, list[str]] = field(default_factory=dict)
    # Newest completed load of the dataset (this run's or an earlier one): the version of the raw
    # data that the transform's cache key is built from.
    latest_load_id: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_source(request: EltRequest, resolver: CredentialResolver) -> Any:
    """The dlt source object for the request (imports only the chosen source's module)."""
    if request.source == "demo":
        from flows.sources.demo_shop import demo_shop

        return demo_shop(request.demo.resolved_dir(), request.demo.through_day)
    if request.source == "rest":
        from flows.sources.rest_shop import rest_shop

        assert request.rest is not None
        return rest_shop(request.rest, resolver.get(request.rest.token_secret))
    from flows.sources.sql_shop import sql_shop

    assert request.sql is not None
    (url,) = resolver.require([request.sql.connection_secret], "the sql source").values()
    return sql_shop(request.sql, url)


def _work_root() -> Path | None:
    # Under DATA_DIR when set (the stack's volume has room for big extracts); else system temp.
    root = os.environ.get("DLT_WORK_DIR") or os.environ.get("DATA_DIR")
    if not root:
        return None
    path = Path(root) / "dlt-work"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bad_data_error(exc: BaseException) -> BaseException | None:
    """The exception in dlt's wrappers that says the data is malformed, if any."""
    for inner in exception_chain(exc):
        if isinstance(inner, MalformedSourceDataError) or type(inner).__name__ == "DataValidationError":
            return inner
    return None


def _table_counts(pipeline: Any, tables: list[str]) -> tuple[dict[str, int], str | None]:
    """Rows per table and the newest completed load id of the dataset."""
    counts: dict[str, int] = {}
    with pipeline.sql_client() as client:
        for table in tables:
            rows = client.execute_sql(f"SELECT COUNT(*) FROM {client.make_qualified_table_name(table)}")
            counts[table] = int(rows[0][0])
        loads = client.make_qualified_table_name("_dlt_loads")
        latest = client.execute_sql(f"SELECT MAX(load_id) FROM {loads} WHERE status = 0")[0][0]
    return counts, latest


def run_pipeline(request: EltRequest, warehouse: Warehouse, resolver: CredentialResolver) -> LoadSummary:
    """Extracts, normalizes and loads the request's source; raises a clear error on bad data."""
    import dlt
    from dlt.pipeline.exceptions import PipelineStepFailed

    started = time.perf_counter()
    source = build_source(request, resolver)
    work_dir = tempfile.mkdtemp(prefix="dlt-", dir=_work_root())
    try:
        pipeline = dlt.pipeline(
            pipeline_name=f"elt_{request.source}",
            pipelines_dir=work_dir,
            destination=warehouse.dlt_destination(),
            dataset_name=request.raw_dataset,
        )
        columns_before = {}
        try:
            pipeline.sync_destination()
            columns_before = {t: set(c) for t, c in _data_tables(pipeline).items()}
            load_info = pipeline.run(
                source,
                schema_contract=SCHEMA_CONTRACT,
                refresh="drop_sources" if request.full_refresh else None,
            )
        except PipelineStepFailed as exc:
            cause = _bad_data_error(exc)
            if cause is not None:
                raise MalformedSourceDataError(
                    f"{request.source} source: malformed data, nothing was loaded ({exc.step} step): {cause}"
                ) from exc
            raise
        normalize = pipeline.last_trace.last_normalize_info
        rows_loaded = {
            t: n for t, n in (normalize.row_counts if normalize else {}).items() if not t.startswith("_dlt")
        }
        tables = _data_tables(pipeline)
        new_columns = {
            t: sorted(set(cols) - columns_before[t])
            for t, cols in tables.items()
            if t in columns_before and set(cols) - columns_before[t]
        }
        table_rows, latest_load_id = _table_counts(pipeline, sorted(tables))
        return LoadSummary(
            source=request.source,
            dataset=request.raw_dataset,
            destination=warehouse.describe(),
            load_ids=list(load_info.loads_ids),
            rows_loaded=rows_loaded,
            table_rows=table_rows,
            new_columns=new_columns,
            latest_load_id=latest_load_id,
            seconds=round(time.perf_counter() - started, 3),
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _data_tables(pipeline: Any) -> dict[str, list[str]]:
    """Loaded data tables of the pipeline's schema and their columns (dlt's own tables left out)."""
    if not pipeline.default_schema_name:
        return {}
    return {
        table["name"]: list(table.get("columns", {}))
        for table in pipeline.default_schema.data_tables(include_incomplete=False)
    }


def _artifact(summary: LoadSummary) -> str:
    lines = [
        f"# Load of the {summary.source} source",
        "",
        f"Destination: {summary.destination}, dataset `{summary.dataset}`  ",
        f"Load ids: {', '.join(summary.load_ids) or 'none (nothing new)'}  ",
        f"Duration: {summary.seconds:.1f} s",
        "",
        "| table | rows loaded this run | rows in table |",
        "|---|---:|---:|",
    ]
    for table in sorted(summary.table_rows):
        lines.append(f"| {table} | {summary.rows_loaded.get(table, 0)} | {summary.table_rows[table]} |")
    if summary.new_columns:
        lines += ["", "New columns (schema evolution): "]
        lines += [f"- `{t}`: {', '.join(cols)}" for t, cols in summary.new_columns.items()]
    return "\n".join(lines) + "\n"


@task(
    name="ingest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BACKOFF_SECONDS),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient_error,
    timeout_seconds=INGEST_TIMEOUT_SECONDS,
    cache_policy=NO_CACHE,  # source data changes without the inputs changing: never skip a load
)
def ingest(request: EltRequest, warehouse: Warehouse) -> dict[str, Any]:
    """Loads the source into ``raw_<source>`` and publishes a load-info artifact."""
    logger = get_run_logger()
    resolver = CredentialResolver()  # read per attempt: a rotated secret is picked up on retry
    summary = run_pipeline(request, warehouse, resolver)
    logger.info(
        "Loaded %s rows into %s (%s) in %.1f s, load ids %s",
        sum(summary.rows_loaded.values()),
        summary.dataset,
        summary.destination,
        summary.seconds,
        summary.load_ids,
    )
    if summary.new_columns:
        logger.info("Schema evolved, new columns: %s", summary.new_columns)
    create_markdown_artifact(
        key=f"load-info-{request.source}",
        markdown=_artifact(summary),
        description=f"dlt load info of the {request.source} source",
    )
    return summary.as_dict()
