"""The elt flow on the offline demo source into DuckDB: loads, merges, transforms, is idempotent."""

from __future__ import annotations

from pathlib import Path

from flows.elt import elt
from flows.sources.demo import DemoSource
from tests.flows.elt_testkit import (
    REPO,
    DuckWarehouse,
    artifacts,
    asset_events,
    read_sample,
    task_runs,
    wait_for,
)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


def test_demo_day_by_day_merges_changes_and_reruns_change_nothing(warehouse: DuckWarehouse) -> None:
    code_before = _files(REPO / "flows")

    day1 = elt(source=DemoSource(through_day=1), return_state=True)
    assert day1.is_completed(), day1.message
    result1 = day1.result()
    assert result1["ingest"]["rows_loaded"] == {"customers": 108, "orders": 480, "payments": 560}
    assert warehouse.count("raw_demo.orders") == 480
    # An order that day 2 of the sample changes to 'returned' (and refunds its payment).
    changed_day3 = {r["id"] for r in read_sample(3, "orders")}
    returned = next(
        r["id"] for r in read_sample(2, "orders") if r["status"] == "returned" and r["id"] not in changed_day3
    )
    status_day1 = next(r for r in read_sample(1, "orders") if r["id"] == returned)["status"]
    assert status_day1 != "returned"
    assert warehouse.query(f"select status from raw_demo.orders where id = {returned}") == [(status_day1,)]

    all_days = elt(return_state=True)
    assert all_days.is_completed(), all_days.message
    result = all_days.result()
    # Days 2-3 hold 12 new customers + 4 changed, 120 new orders + 51 changed, ...: changed rows are
    # updated in place (merge on id), so the tables grow by the new rows only.
    assert {t: warehouse.count(f"raw_demo.{t}") for t in ("customers", "orders", "payments")} == {
        "customers": 120,
        "orders": 600,
        "payments": 693,
    }
    assert warehouse.query(f"select status from raw_demo.orders where id = {returned}") == [("returned",)]
    assert warehouse.query("select count(*) from raw_demo.orders group by id having count(*) > 1") == []
    assert result["mart_rows"] == {"customer_lifetime_value": 120, "daily_revenue": 62, "fct_orders": 600}
    assert not result["transform_cached"]

    # The incremental daily_revenue, updated twice, equals a full recomputation from the orders.
    recomputed = warehouse.query(
        "select order_date, count(*), sum(case when status not in ('cancelled', 'returned') "
        "then amount_paid else 0 end), sum(amount_refunded) from analytics_demo.fct_orders "
        "group by 1 order by 1"
    )
    incremental = warehouse.query(
        "select order_date, order_count, revenue, refunded from analytics_demo.daily_revenue order by 1"
    )
    assert incremental == recomputed
    # A returned order's refund is counted, and the order no longer adds to lifetime value.
    assert warehouse.query(
        f"select amount_refunded > 0 from analytics_demo.fct_orders where order_id = {returned}"
    ) == [(True,)]

    snapshot = warehouse.snapshot()
    again = elt(return_state=True)
    assert again.is_completed(), again.message
    rerun = again.result()
    assert rerun["ingest"]["rows_loaded"] == {}
    assert rerun["transform_cached"], "no new raw data: the dbt build should be reused from the cache"
    assert rerun["mart_rows"] == result["mart_rows"]
    assert warehouse.snapshot() == snapshot

    # dbt writes its target/ and logs/ under DATA_DIR: flows/ is read-only in the stack.
    assert _files(REPO / "flows") == code_before
    assert (
        warehouse.data_dir / "dbt" / "shop" / "duckdb-analytics_demo" / "target" / "manifest.json"
    ).exists()

    # Every dbt model and test ran as its own Prefect task; artifacts were published.
    names = {tr.name for tr in task_runs(all_days.state_details.flow_run_id)}
    assert {"ingest", "model stg_orders", "model daily_revenue", "model customer_lifetime_value"} <= {
        n.rsplit("-", 1)[0] if n.startswith(("ingest", "transform")) else n for n in names
    }
    assert any(n.startswith("test accepted_values_stg_orders_status") for n in names)
    found = artifacts(all_days.state_details.flow_run_id)
    assert {"load-info-demo", "elt-summary-demo"} <= set(found)
    # rows loaded this run = days 2 and 3 (new and changed rows), rows in table = distinct ids.
    orders_loaded = len(read_sample(2, "orders")) + len(read_sample(3, "orders"))
    assert f"| orders | {orders_loaded} | 600 |" in found["load-info-demo"].data
    assert "| daily_revenue | 62 |" in found["elt-summary-demo"].data
    # prefect-dbt emitted the models as assets (materialization events keyed by the relation).
    wait_for(lambda: asset_events("duckdb://"), timeout=30)
    keys = {e["resource"]["prefect.resource.id"] for e in asset_events("duckdb://")}
    assert any(k.endswith("analytics_demo/daily_revenue") for k in keys), keys


def test_full_refresh_reloads_everything_once(warehouse: DuckWarehouse) -> None:
    assert elt(transform=False, return_state=True).is_completed()
    counts = {t: warehouse.count(f"raw_demo.{t}") for t in ("customers", "orders", "payments")}
    # Rows inserted behind dlt's back disappear: the tables are dropped and loaded from the source.
    warehouse.execute(
        "insert into raw_demo.customers (id, updated_at, _dlt_load_id) values (999999, now(), '0')"
    )

    refreshed = elt(transform=False, full_refresh=True, return_state=True)
    assert refreshed.is_completed(), refreshed.message
    # Every row of every day is read again (the incremental state was reset with the tables).
    assert refreshed.result()["ingest"]["rows_loaded"]["orders"] == sum(
        len(read_sample(day, "orders")) for day in (1, 2, 3)
    )
    assert {t: warehouse.count(f"raw_demo.{t}") for t in ("customers", "orders", "payments")} == counts
