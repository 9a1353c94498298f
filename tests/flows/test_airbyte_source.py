"""The ``airbyte`` source of ``elt``: an Airbyte sync (the local stand-in of its API, which also writes
the synced tables into the test's DuckDB as Airbyte's destination would), then the dbt build on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.elt import elt
from flows.sources.airbyte import AirbyteSource
from tests.flows.elt_testkit import SAMPLE_DIR, DuckWarehouse, artifacts
from tests.support.airbyte_standin import PUBLIC, AirbyteStandin, Job, running_standin

CONNECTION = "5d9c1f2e-8a3b-4c7d-9e0f-1a2b3c4d5e6f"
TABLES = ("customers", "orders", "payments")


def airbyte_writes(warehouse: DuckWarehouse, days: Iterator[int], schema: str = "airbyte_shop"):  # type: ignore[no-untyped-def]
    """A loader for the stand-in: each succeeded job upserts the next day's CSVs into ``schema`` as
    Airbyte's deduplicated typed tables (stream columns + _airbyte_* columns, one row per id)."""

    def load(job: Job) -> None:
        day = next(days)
        statements = [f"create schema if not exists {schema}"]
        for table in TABLES:
            csv = SAMPLE_DIR / f"day_{day}" / f"{table}.csv"
            rows = f"read_csv('{csv}')"
            airbyte_columns = (
                "uuid()::varchar as _airbyte_raw_id, now() as _airbyte_extracted_at, "
                "'{}' as _airbyte_meta, 0 as _airbyte_generation_id"
            )
            create = f"create table if not exists {schema}.{table} as select *, {airbyte_columns} from {rows}"
            statements += [
                f"{create} limit 0",
                f"delete from {schema}.{table} where id in (select id from {rows})",
                f"insert into {schema}.{table} select *, {airbyte_columns} from {rows}",
            ]
        warehouse.execute(";\n".join(statements))

    return load


@pytest.fixture
def standin(warehouse: DuckWarehouse, monkeypatch: pytest.MonkeyPatch) -> Iterator[AirbyteStandin]:
    """The stand-in with client-credentials auth, and the flow configured for it (bare server URL)."""
    with running_standin(client_id="platform-app", client_secret="s3cret") as standin:
        monkeypatch.setenv("AIRBYTE_API_URL", standin.server_url)
        monkeypatch.setenv("AIRBYTE_CLIENT_ID", "platform-app")
        monkeypatch.setenv("AIRBYTE_CLIENT_SECRET", "s3cret")
        for name in ("AIRBYTE_API_TOKEN", "AIRBYTE_TOKEN_URL"):
            monkeypatch.delenv(name, raising=False)
        yield standin


def source(**fields: object) -> dict[str, object]:
    return {"kind": "airbyte", "connection_id": CONNECTION, "poll_interval_seconds": 0.05, **fields}


def sample_ids(table: str, through_day: int) -> int:
    ids: set[str] = set()
    for day in range(1, through_day + 1):
        lines = (SAMPLE_DIR / f"day_{day}" / f"{table}.csv").read_text().splitlines()[1:]
        ids |= {line.split(",", 1)[0] for line in lines}
    return len(ids)


def test_each_run_syncs_then_builds_the_marts_on_what_airbyte_loaded(
    standin: AirbyteStandin, warehouse: DuckWarehouse
) -> None:
    standin.connection(CONNECTION, ["running", "succeeded"], rows=1150, size=98765)
    standin.on_success[CONNECTION] = airbyte_writes(warehouse, iter((1, 2)))

    first = elt(source=source(), return_state=True)

    assert first.is_completed(), first.message
    assert standin.requests("POST", f"{PUBLIC}/jobs") == [("POST", f"{PUBLIC}/jobs")]
    assert warehouse.count("analytics_airbyte.fct_orders") == sample_ids("orders", 1)
    assert warehouse.count("analytics_airbyte.customer_lifetime_value") == sample_ids("customers", 1)
    # The dbt models read the views over Airbyte's tables, which carry a load id per row.
    assert warehouse.query(
        "select table_type from information_schema.tables "
        "where table_schema = 'raw_airbyte' and table_name = 'orders'"
    ) == [("VIEW",)]
    assert warehouse.query("select job_id, status, rows_synced from raw_airbyte.airbyte_sync_jobs") == [
        (100, "succeeded", 1150)
    ]
    found = artifacts(first.state_details.flow_run_id)
    assert "| rows synced | 1,150 |" in found[f"airbyte-sync-{CONNECTION}"].data
    assert "| fct_orders | " in found["elt-summary-airbyte"].data

    second = elt(source=source(), return_state=True)

    assert second.is_completed(), second.message
    assert second.result()["transform_cached"] is False, "a new sync must rebuild, not reuse the build"
    assert warehouse.count("analytics_airbyte.fct_orders") == sample_ids("orders", 2)
    assert warehouse.count("raw_airbyte.airbyte_sync_jobs") == 2
    # daily_revenue is incremental on the load id: the dates the second sync touched were
    # recomputed, so it agrees with a full aggregate of the orders.
    assert warehouse.query(
        "select order_date, order_count from analytics_airbyte.daily_revenue order by 1"
    ) == warehouse.query(
        "select order_date, count(*) from analytics_airbyte.fct_orders group by 1 order by 1"
    )


def test_a_failed_sync_fails_the_run_once_and_builds_nothing(
    standin: AirbyteStandin, warehouse: DuckWarehouse
) -> None:
    standin.connection(CONNECTION, ["running", "failed"])

    state = elt(source=source(), return_state=True)

    assert state.is_failed()
    assert "ended with status failed" in state.message and "Nothing was built" in state.message
    # No retry of the ingest: a second sync would only fail the same way (Airbyte retries itself).
    assert standin.requests("POST", f"{PUBLIC}/jobs") == [("POST", f"{PUBLIC}/jobs")]
    assert warehouse.query(
        "select count(*) from information_schema.tables where table_schema = 'analytics_airbyte'"
    ) == [(0,)]


def test_tables_missing_from_the_destination_schema_are_named(
    standin: AirbyteStandin, warehouse: DuckWarehouse
) -> None:
    standin.connection(CONNECTION, ["succeeded"])
    standin.on_success[CONNECTION] = airbyte_writes(warehouse, iter((1,)), schema="elsewhere")

    state = elt(source=source(), return_state=True)

    assert state.is_failed()
    assert "airbyte_shop.customers, airbyte_shop.orders, airbyte_shop.payments do not exist" in state.message
    assert "destination namespace 'airbyte_shop'" in state.message


def test_missing_credentials_fail_before_any_call(
    standin: AirbyteStandin, warehouse: DuckWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRBYTE_CLIENT_SECRET")

    state = elt(source=source(), return_state=True)

    assert state.is_failed() and "AIRBYTE_CLIENT_SECRET" in state.message
    assert standin.calls == []
    assert not Path(warehouse.path).exists() or warehouse.query(
        "select count(*) from information_schema.schemata where schema_name = 'raw_airbyte'"
    ) == [(0,)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"connection_id": "not-a-uuid"}, "connection_id must be an Airbyte connection's UUID"),
        ({"destination_schema": "raw_airbyte"}, "destination_schema must differ from raw_airbyte"),
        ({"tables": ["orders", "orders"]}, "must not repeat"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AirbyteSource.model_validate({"connection_id": CONNECTION, **fields})
