"""The REST source against a local fixture API: pagination, incremental cursor, merge, auth,
schema evolution, and malformed records that fail the run without touching the warehouse."""

from __future__ import annotations

import math

import pytest

from flows.elt import elt
from flows.sources.rest import RestSource
from tests.flows.conftest import FakeShopApi
from tests.flows.elt_testkit import DuckWarehouse, read_sample, task_runs


def _ingest(api: FakeShopApi, **overrides: object):  # type: ignore[no-untyped-def]
    rest = RestSource(base_url=api.base_url, page_size=50, **overrides)
    return elt(source=rest, transform=False, return_state=True)


def _ids(*days: int, table: str) -> set[int]:
    return {r["id"] for d in days for r in read_sample(d, table)}


def test_paginated_incremental_merge_and_new_column(warehouse: DuckWarehouse, shop_api: FakeShopApi) -> None:
    shop_api.load_sample_day(1)
    first = _ingest(shop_api)
    assert first.is_completed(), first.message
    assert warehouse.count("raw_rest.orders") == 480
    order_requests = [p for r, p in shop_api.requests if r == "orders"]
    # 480 rows at 50 per page: 10 full pages, then the empty page that ends pagination.
    assert len(order_requests) == math.ceil(480 / 50) + 1
    assert [int(p["page"]) for p in order_requests] == list(range(1, 12))
    assert {p["updated_since"] for p in order_requests} == {"1970-01-01T00:00:00Z"}

    # Day 2: changed and new rows, and customers gain a column the API did not have before.
    shop_api.requests.clear()
    day2_customers = [{**row, "loyalty_tier": "gold"} for row in read_sample(2, "customers")]
    shop_api.upsert("customers", day2_customers)
    shop_api.upsert("orders", read_sample(2, "orders"))
    shop_api.upsert("payments", read_sample(2, "payments"))
    second = _ingest(shop_api)
    assert second.is_completed(), second.message

    # Incremental: the second run asks only for rows updated since the first run's newest row.
    newest_day1 = max(r["updated_at"] for r in read_sample(1, "orders"))
    assert {p["updated_since"] for r, p in shop_api.requests if r == "orders"} == {newest_day1}
    assert second.result()["ingest"]["rows_loaded"]["orders"] == len(read_sample(2, "orders"))
    # Merge: changed rows are updated in place, never duplicated.
    for table in ("customers", "orders", "payments"):
        assert warehouse.count(f"raw_rest.{table}") == len(_ids(1, 2, table=table)), table
    changed = next(r for r in read_sample(2, "orders") if r["id"] in _ids(1, table="orders"))
    assert warehouse.query(f"select status from raw_rest.orders where id = {changed['id']}") == [
        (changed["status"],)
    ]
    # Schema evolution: the new column exists, filled for the new rows, NULL for the old ones.
    assert second.result()["ingest"]["new_columns"] == {"customers": ["loyalty_tier"]}
    tiers = dict(warehouse.query("select loyalty_tier, count(*) from raw_rest.customers group by 1"))
    assert tiers == {
        "gold": len(day2_customers),
        None: len(_ids(1, 2, table="customers")) - len(day2_customers),
    }

    # The same data again adds nothing.
    third = _ingest(shop_api)
    assert third.is_completed(), third.message
    assert third.result()["ingest"]["rows_loaded"] == {}
    assert warehouse.count("raw_rest.orders") == len(_ids(1, 2, table="orders"))


@pytest.mark.parametrize(
    ("bad_record", "expected"),
    [
        (
            {
                "customer_id": 1,
                "order_date": "2024-03-05",
                "status": "placed",
                "updated_at": "2024-03-05T10:00:00Z",
            },
            "record without a usable primary key 'id'",
        ),
        (
            {
                "id": 9001,
                "customer_id": 1,
                "order_date": "2024-03-05",
                "status": "placed",
                "updated_at": "yesterday",
            },
            "'updated_at' must be an ISO 8601 timestamp",
        ),
        (
            {
                "id": 9002,
                "customer_id": "not-a-number",
                "order_date": "2024-03-05",
                "status": "placed",
                "updated_at": "2024-03-05T10:00:00Z",
            },
            "customer_id",
        ),
    ],
    ids=["missing-key", "bad-cursor", "wrong-type"],
)
def test_malformed_records_fail_clearly_and_leave_the_warehouse_unchanged(
    warehouse: DuckWarehouse, shop_api: FakeShopApi, bad_record: dict[str, object], expected: str
) -> None:
    shop_api.load_sample_day(1)
    assert _ingest(shop_api).is_completed()
    before = warehouse.snapshot(("raw_rest",))

    shop_api.upsert("orders", [*read_sample(2, "orders"), bad_record])
    failed = _ingest(shop_api)
    assert failed.is_failed()
    assert "malformed data, nothing was loaded" in failed.message
    assert "orders" in failed.message and expected in failed.message
    # Bad data is not retried: the ingest task ran once.
    ingest_runs = [tr for tr in task_runs(failed.state_details.flow_run_id) if tr.name.startswith("ingest")]
    assert [tr.run_count for tr in ingest_runs] == [1]
    # Not even the good day-2 rows of the same batch landed: the last good tables are intact.
    assert warehouse.snapshot(("raw_rest",)) == before


def test_bearer_token_comes_from_the_credentials(
    warehouse: DuckWarehouse, shop_api: FakeShopApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop_api.load_sample_day(1)
    shop_api.token = "t0ken-for-tests"
    refused = _ingest(shop_api)
    assert refused.is_failed()
    assert "401" in refused.message
    assert not warehouse.path.exists() or warehouse.query(
        "select count(*) from information_schema.tables where table_schema = 'raw_rest' "
        "and table_name = 'orders'"
    ) == [(0,)]

    monkeypatch.setenv("REST_API_TOKEN", "t0ken-for-tests")
    accepted = _ingest(shop_api)
    assert accepted.is_completed(), accepted.message
    assert warehouse.count("raw_rest.orders") == 480
    assert "t0ken-for-tests" not in str(accepted.result())
