"""The ``airbyte`` source of the ELT flow: an Airbyte connection syncs, then dbt builds on what it loaded.

Airbyte, not dlt, moves the data: the connection's destination must be this platform's warehouse
(Snowflake in production; Airbyte cannot write the stack's DuckDB file), writing its streams into
``destination_schema`` with Airbyte's typed tables (Destinations V2: the stream's columns plus
``_airbyte_raw_id``, ``_airbyte_extracted_at``, ...), in an "Incremental | Append + Deduped" mode so
each table holds one row per primary key.

What an ELT run does with this source, inside the ``ingest`` task and under the warehouse lock:

1. Runs the sync through Airbyte's public API (``flows.airbyte``: the job is started, polled, and
   cancelled on timeout) and publishes its ``airbyte-sync-<connection>`` artifact (rows and bytes).
2. Exposes each stream to the dbt project as a view ``raw_airbyte.<table>`` over
   ``<destination_schema>.<table>``, adding the ``_dlt_load_id`` column the shop models read: the
   row's ``_airbyte_extracted_at`` as epoch microseconds (fixed width, so it compares as text the
   way dlt's load ids do and ``daily_revenue`` recomputes only the dates a sync touched).
3. Records the sync job in ``raw_airbyte.airbyte_sync_jobs`` through dlt (merged on ``job_id``).
   That is a new dlt load per sync, so the transform's cache key changes and dbt rebuilds.

A failed, cancelled or timed-out sync fails the run without a retry (Airbyte retries attempts
itself, and a retry here would start another sync); transient HTTP errors are retried per request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from flows.credentials import CredentialResolver
from flows.errors import PermanentError
from flows.sources.base import SHOP_TABLES, Identifier, Source

# _airbyte_extracted_at as fixed-width epoch microseconds, per warehouse kind.
LOAD_ID_SQL = {
    "duckdb": "cast(epoch_us(_airbyte_extracted_at) as varchar)",
    "snowflake": "to_varchar(date_part(epoch_microsecond, _airbyte_extracted_at))",
}
JOBS_TABLE = "airbyte_sync_jobs"


class AirbyteSyncFailed(PermanentError, RuntimeError):
    """The sync job did not succeed, or its tables are not where the source expects them."""


class AirbyteSource(Source):
    """An Airbyte connection (Cloud or self-managed) that loads the shop tables into the warehouse."""

    kind: Literal["airbyte"] = "airbyte"
    connection_id: str = Field(description="The Airbyte connection's UUID (in its URL in Airbyte's UI).")
    destination_schema: Identifier = Field(
        default="airbyte_shop",
        description="Schema (the connection's destination namespace) its streams land in, in this warehouse.",
    )
    tables: list[Identifier] = Field(
        default=list(SHOP_TABLES), min_length=1, description="The streams to build on (one table each)."
    )
    timeout_seconds: int = Field(
        default=3600, ge=1, description="Cancel the sync and fail when it still runs after this long."
    )
    poll_interval_seconds: float = Field(default=10.0, gt=0, description="Seconds between status checks.")

    @field_validator("connection_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise ValueError(
                "connection_id must be an Airbyte connection's UUID (the id in the connection's URL in "
                f"Airbyte's UI: .../connections/<id>), got {value!r}"
            ) from None

    @model_validator(mode="after")
    def _not_the_raw_dataset(self) -> AirbyteSource:
        if self.destination_schema.lower() == self.raw_dataset.lower():
            raise ValueError(
                f"destination_schema must differ from {self.raw_dataset}, where the platform puts its "
                "views of the streams: point the connection's destination namespace elsewhere "
                "(e.g. airbyte_shop)"
            )
        if len(set(self.tables)) != len(self.tables):
            raise ValueError(f"tables must not repeat a name, got {self.tables}")
        return self

    def loaded_tables(self) -> tuple[str, ...]:
        return tuple(self.tables)

    def check(self) -> None:
        # Missing Airbyte credentials or a bad AIRBYTE_API_URL fail here, before the lock and load.
        from flows.airbyte import resolve_airbyte_settings

        resolve_airbyte_settings()

    def dlt_source(self, resolver: CredentialResolver) -> Any:
        from flows.airbyte import AirbyteJobError, run_airbyte_sync
        from flows.warehouses import resolve_warehouse

        try:
            job = run_airbyte_sync(
                self.connection_id,
                timeout_seconds=self.timeout_seconds,
                poll_interval_seconds=self.poll_interval_seconds,
            )
        except AirbyteJobError as exc:
            raise AirbyteSyncFailed(f"{exc} Nothing was built.") from exc
        expose_streams(resolve_warehouse(), self.destination_schema, self.raw_dataset, self.tables)
        return sync_jobs_source(job)


def _present(cursor: Any, schema: str, tables: list[str]) -> dict[str, set[str]]:
    """table -> lower-cased column names, for the tables of ``schema`` among ``tables``."""
    listed = ", ".join(f"'{t.lower()}'" for t in tables)
    cursor.execute(
        "select lower(table_name), lower(column_name) from information_schema.columns "
        f"where lower(table_schema) = '{schema.lower()}' and lower(table_name) in ({listed})"
    )
    found: dict[str, set[str]] = {}
    for table, column in cursor.fetchall():
        found.setdefault(table, set()).add(column)
    return found


def expose_streams(warehouse: Any, destination_schema: str, raw_schema: str, tables: list[str]) -> None:
    """(Re)creates ``raw_schema.<table>`` views over Airbyte's tables, with a ``_dlt_load_id`` column."""
    if warehouse.kind not in LOAD_ID_SQL:
        raise AirbyteSyncFailed(
            f"The airbyte source supports the warehouses {', '.join(LOAD_ID_SQL)}, not {warehouse.kind}."
        )
    connection = warehouse.connect()
    try:
        cursor = connection.cursor()
        found = _present(cursor, destination_schema, tables)
        missing = [t for t in tables if t.lower() not in found]
        if missing:
            raise AirbyteSyncFailed(
                f"The Airbyte sync succeeded but {', '.join(f'{destination_schema}.{t}' for t in missing)} "
                f"{'does' if len(missing) == 1 else 'do'} not exist in {warehouse.describe()}: the "
                "connection's destination must be this warehouse, with destination namespace "
                f"{destination_schema!r} and a stream for each of {', '.join(tables)} (or set the "
                "source's destination_schema and tables to what it writes)."
            )
        untyped = [t for t in tables if "_airbyte_extracted_at" not in found[t.lower()]]
        if untyped:
            raise AirbyteSyncFailed(
                f"{', '.join(f'{destination_schema}.{t}' for t in untyped)} lack(s) _airbyte_extracted_at: "
                "use an Airbyte destination with typed final tables (Destinations V2)."
            )
        cursor.execute(f"create schema if not exists {raw_schema}")
        for table in tables:
            cursor.execute(
                f"create or replace view {raw_schema}.{table} as select *, "
                f"{LOAD_ID_SQL[warehouse.kind]} as _dlt_load_id from {destination_schema}.{table}"
            )
        if warehouse.kind == "duckdb":
            connection.commit()
    finally:
        connection.close()


def sync_jobs_source(job: dict[str, Any]) -> Any:
    """A dlt source of one record, the sync job (merged on job_id): one dlt load per sync."""
    import dlt

    @dlt.resource(name=JOBS_TABLE, primary_key="job_id", write_disposition="merge")
    def jobs() -> Iterator[dict[str, Any]]:
        yield job

    @dlt.source(name="airbyte_syncs", max_table_nesting=0)
    def syncs() -> Any:
        return [jobs]

    return syncs()
