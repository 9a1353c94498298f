"""Runs a dlt source into the warehouse as one Prefect task, and publishes what it loaded.

dlt's working folder is a fresh temporary directory per run: the incremental state and schema are
restored from the destination (dlt's ``_dlt_pipeline_state`` table) at the start of every run, so
they survive container teardown and nothing is written next to the code. A failed run leaves no
half-processed package behind to be replayed by the next one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.credentials import CredentialResolver
from flows.errors import MalformedSourceDataError
from flows.params import EltRequest
from flows.retry import exception_chain, retry_on_transient_error
from flows.settings import EltSettings
from flows.warehouses import Warehouse

# New tables and columns are absorbed (schema evolution); a value that does not fit its column's
# type is a malformed record and fails the run instead of creating a variant column.
SCHEMA_CONTRACT = {"tables": "evolve", "columns": "evolve", "data_type": "freeze"}
# dlt's configuration of every ELT pipeline, through dlt's own environment provider (set for the
# run, see dlt_config): no telemetry (flow runs may have no internet at all), and dlt's load id
# column on Arrow-backed sources too (the dbt models need _dlt_load_id).
DLT_CONFIG = {
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID": "true",
}


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


@contextlib.contextmanager
def dlt_config() -> Iterator[None]:
    """DLT_CONFIG for the run's dlt calls; values the user set in the environment win."""
    added = {key: value for key, value in DLT_CONFIG.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


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
    source = request.source.dlt_source(resolver)
    # Under DATA_DIR (the stack's volume has room for big extracts), deleted after the run.
    work_root = EltSettings.from_env().dlt_work_dir
    work_root.mkdir(parents=True, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix="dlt-", dir=work_root)
    try:
        pipeline = dlt.pipeline(
            pipeline_name=f"elt_{request.source.kind}",
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
                    f"{request.source.kind} source: malformed data, nothing was loaded "
                    f"({exc.step} step): {cause}"
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
            source=request.source.kind,
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


# Timeout and backoff come from the run's settings: the flow applies them with .with_options().
@task(
    name="ingest",
    retries=3,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient_error,
    cache_policy=NO_CACHE,  # source data changes without the inputs changing: never skip a load
)
def ingest(request: EltRequest, warehouse: Warehouse) -> dict[str, Any]:
    """Loads the source into ``raw_<source>`` and publishes a load-info artifact."""
    logger = get_run_logger()
    resolver = CredentialResolver()  # read per attempt: a rotated secret is picked up on retry
    with dlt_config():
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
        key=f"load-info-{request.source.kind}",
        markdown=_artifact(summary),
        description=f"dlt load info of the {request.source.kind} source",
    )
    return summary.as_dict()
