"""The SQL source against a real Postgres: tables read incrementally and merged on their primary key,
the connection string resolved as a credential (and never shown)."""

from __future__ import annotations

import uuid

import pytest

from flows.elt import elt
from flows.sources.sql import SqlSource
from tests.flows.conftest import Postgres
from tests.flows.elt_testkit import DuckWarehouse, read_sample

DDL = """
create schema {schema};
create table {schema}.customers (
    id bigint primary key, first_name text, last_name text, email text, country text,
    created_at timestamptz not null, updated_at timestamptz not null);
create table {schema}.orders (
    id bigint primary key, customer_id bigint, order_date date, status text,
    created_at timestamptz not null, updated_at timestamptz not null);
create table {schema}.payments (
    id bigint primary key, order_id bigint, method text, amount_cents bigint, status text,
    created_at timestamptz not null, updated_at timestamptz not null);
"""


def _upsert_day(pg: Postgres, schema: str, day: int) -> None:
    statements = []
    for table in ("customers", "orders", "payments"):
        for row in read_sample(day, table):
            columns = ", ".join(row)
            values = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in row.values())
            updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "id")
            statements.append(
                f"insert into {schema}.{table} ({columns}) values ({values}) "
                f"on conflict (id) do update set {updates};"
            )
    pg.execute("\n".join(statements))


@pytest.fixture
def shop_db(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> tuple[Postgres, str]:
    schema = f"shop_{uuid.uuid4().hex[:8]}"
    postgres.execute(DDL.format(schema=schema))
    monkeypatch.setenv("SQL_SOURCE_URL", postgres.url)
    return postgres, schema


def test_tables_are_loaded_incrementally_and_merged(
    warehouse: DuckWarehouse, shop_db: tuple[Postgres, str]
) -> None:
    pg, schema = shop_db
    _upsert_day(pg, schema, 1)
    sql = SqlSource(schema_name=schema, chunk_size=100)

    first = elt(source=sql, transform=False, return_state=True)
    assert first.is_completed(), first.message
    assert {t: warehouse.count(f"raw_sql.{t}") for t in ("customers", "orders", "payments")} == {
        "customers": 108,
        "orders": 480,
        "payments": 560,
    }

    _upsert_day(pg, schema, 2)
    second = elt(source=sql, transform=False, return_state=True)
    assert second.is_completed(), second.message
    # Only the rows changed or added since the first run were read; they were merged on the key.
    assert second.result()["ingest"]["rows_loaded"]["orders"] == len(read_sample(2, "orders"))
    expected_orders = len({r["id"] for d in (1, 2) for r in read_sample(d, "orders")})
    assert warehouse.count("raw_sql.orders") == expected_orders
    assert warehouse.query("select count(*) from raw_sql.orders group by id having count(*) > 1") == []
    changed = read_sample(2, "orders")[0]
    assert warehouse.query(f"select status from raw_sql.orders where id = {changed['id']}") == [
        (changed["status"],)
    ]

    again = elt(source=sql, transform=False, return_state=True)
    assert again.is_completed(), again.message
    assert again.result()["ingest"]["rows_loaded"] == {}
    assert warehouse.count("raw_sql.orders") == expected_orders
    assert pg.url not in str(again.result())


def test_missing_connection_string_is_named(
    warehouse: DuckWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SQL_SOURCE_URL", raising=False)
    state = elt(source=SqlSource(), transform=False, return_state=True)
    assert state.is_failed()
    assert "the sql source needs SQL_SOURCE_URL" in state.message


def test_table_without_primary_key_is_refused(
    warehouse: DuckWarehouse, shop_db: tuple[Postgres, str]
) -> None:
    pg, schema = shop_db
    pg.execute(f"create table {schema}.events (id bigint, updated_at timestamptz)")
    sql = SqlSource(schema_name=schema, tables=["events"])
    state = elt(source=sql, transform=False, return_state=True)
    assert state.is_failed()
    assert f"table {schema}.events has no primary key to merge on" in state.message
    assert not warehouse.path.exists() or warehouse.query(
        "select count(*) from information_schema.tables where table_schema = 'raw_sql'"
    ) == [(0,)]
