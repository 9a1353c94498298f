"""The Snowflake path: the dbt project's models and tests run on the snowflake target against fakesnow
(Snowflake's SQL dialect emulated on DuckDB, in-process).

What this covers: the profile's snowflake target renders from the environment, the models compile
and run as Snowflake SQL (views, tables, the first build of the incremental model), and the schema
tests pass. What fakesnow cannot cover (see README, Flows): dlt's Snowflake loads (stages, COPY
INTO, merge), a second, incremental run of daily_revenue, authentication (password vs key pair is
checked only up to the connector call), roles/grants, warehouses and real identifier-case rules.
The raw tables are therefore seeded with SQL here, shaped like dlt's (with _dlt_load_id).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flows.transform import mart_row_counts, run_dbt_build
from flows.warehouses import resolve_warehouse
from tests.flows.elt_testkit import read_sample

SNOWFLAKE_ENV = {
    "WAREHOUSE": "snowflake",
    "SNOWFLAKE_ACCOUNT": "fake-account",
    "SNOWFLAKE_USER": "fake-user",
    "SNOWFLAKE_PASSWORD": "fake-password",
    "SNOWFLAKE_DATABASE": "SHOP_DB",
    "SNOWFLAKE_WAREHOUSE": "FAKE_WH",
}
COLUMN_TYPES = {"id": "number", "customer_id": "number", "order_id": "number", "amount_cents": "number"}


@pytest.fixture
def fake_snowflake() -> Iterator[None]:
    fakesnow = pytest.importorskip("fakesnow")
    with fakesnow.patch():
        yield


def _seed_raw_tables(connection, schema: str) -> None:  # type: ignore[no-untyped-def]
    cursor = connection.cursor()
    cursor.execute(f"create schema if not exists {schema}")
    for table in ("customers", "orders", "payments"):
        rows = read_sample(1, table)
        columns = list(rows[0])
        ddl = ", ".join(
            f"{c} {COLUMN_TYPES.get(c, 'timestamp_tz' if c.endswith('_at') else 'varchar')}" for c in columns
        )
        cursor.execute(f"create or replace table {schema}.{table} ({ddl}, _dlt_load_id varchar)")
        placeholders = ", ".join(["%s"] * (len(columns) + 1))
        cursor.executemany(
            f"insert into {schema}.{table} values ({placeholders})",
            [[*row.values(), "1700000000.1"] for row in rows],
        )


def test_dbt_models_and_tests_run_on_the_snowflake_target(
    fake_snowflake: None, warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SNOWFLAKE_ENV.items():
        monkeypatch.setenv(name, value)
    wh = resolve_warehouse()
    assert wh.kind == "snowflake" and wh.dbt_target == "snowflake"
    connection = wh.connect()
    try:
        _seed_raw_tables(connection, "RAW_DEMO")
    finally:
        connection.close()

    summary = run_dbt_build(wh, raw_schema="RAW_DEMO", analytics_schema="ANALYTICS_DEMO")
    assert summary["target"] == "snowflake"
    # 6 models built, every schema test passed (dbt raises naming the node otherwise).
    assert summary["node_statuses"].get("success") == 6
    assert summary["node_statuses"].get("pass", 0) >= 25
    # no-op: the exposure of the ML step (flows/dbt/shop/models/exposures.yml), a node without SQL.
    assert set(summary["node_statuses"]) == {"success", "pass", "no-op"}

    counts = mart_row_counts(wh, summary["marts"])
    assert counts["fct_orders"] == len(read_sample(1, "orders"))
    assert counts["customer_lifetime_value"] == len(read_sample(1, "customers"))
    assert counts["daily_revenue"] == len({r["order_date"] for r in read_sample(1, "orders")})
    # dbt's target/ went under DATA_DIR, per target and schema.
    assert (
        warehouse.data_dir / "dbt" / "shop" / "snowflake-ANALYTICS_DEMO" / "target" / "manifest.json"
    ).exists()
