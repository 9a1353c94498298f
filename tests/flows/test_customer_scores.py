"""The customer_scores ML step on the marts of the demo ELT, in DuckDB: one score per customer,
deterministic, atomic replacement of the scores table, assets connecting to dbt's, clear failures."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

import flows.ml.customer_scores as scores_module
from flows.elt import elt
from flows.ml.customer_scores import customer_scores
from tests.flows.elt_testkit import DuckWarehouse, artifacts, asset_events, wait_for


@pytest.fixture(scope="module")
def demo_marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DuckDB file with the demo ELT's marts, built once; each test gets its own copy."""
    data_dir = tmp_path_factory.mktemp("marts")
    path = data_dir / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WAREHOUSE", "duckdb")
        mp.setenv("DUCKDB_PATH", str(path))
        mp.setenv("DATA_DIR", str(data_dir))
        state = elt(return_state=True)
        assert state.is_completed(), state.message
    yield path


@pytest.fixture
def marts(demo_marts: Path, warehouse: DuckWarehouse) -> DuckWarehouse:
    shutil.copy(demo_marts, warehouse.path)
    return warehouse


def _scores(warehouse: DuckWarehouse) -> list[tuple]:
    return warehouse.query("select * from analytics_demo.customer_scores order by customer_id")


def test_scores_every_customer_deterministically_with_assets_and_artifact(marts: DuckWarehouse) -> None:
    first = customer_scores(return_state=True)
    assert first.is_completed(), first.message
    result = first.result()
    customers = marts.count("analytics_demo.customer_lifetime_value")
    assert customers == 120
    assert result["rows"] == customers
    assert marts.query(
        "select count(*), count(distinct customer_id), min(score_rank), max(score_rank), "
        "min(predicted_revenue_next_30d) >= 0, max(as_of_date), min(horizon_days) "
        "from analytics_demo.customer_scores"
    ) == [(120, 120, 1, 120, True, date(2024, 3, 3), 30)]
    # Every customer of the mart is scored, none twice.
    assert marts.query(
        "select count(*) from analytics_demo.customer_lifetime_value c "
        "left join analytics_demo.customer_scores s using (customer_id) where s.customer_id is null"
    ) == [(0,)]
    # Features agree with the marts: orders and revenue as of the last order date.
    assert marts.query(
        "select count(*) from analytics_demo.customer_scores s join analytics_demo.customer_lifetime_value c "
        "using (customer_id) where s.orders <> c.order_count or abs(s.revenue - c.lifetime_value) > 0.01"
    ) == [(0,)]
    metrics = result["metrics"]
    assert metrics["customers"] == 120
    # The demo orders are random, so the edge is small, but the model must not lose to the mean.
    assert 0 < metrics["cv_mae"] < metrics["baseline_mae"], metrics
    assert result["training_cutoff"] == "2024-02-02"

    snapshot = _scores(marts)
    second = customer_scores(return_state=True)
    assert second.is_completed(), second.message
    assert _scores(marts) == snapshot, "a second run on the same marts must give identical scores"
    assert second.result()["metrics"] == metrics

    found = artifacts(first.state_details.flow_run_id)["customer-scores"].data
    assert "| MAE, model |" in found and "predict-the-mean baseline" in found
    top = min(snapshot, key=lambda r: r[1])  # score_rank 1
    assert f"| 1 | {top[0]} | {top[2]:.2f} |" in found

    # The scores table is an asset whose upstream are the dbt marts, under prefect-dbt's keys.
    database = marts.path.stem
    key = f"duckdb://{database}/analytics_demo/customer_scores"
    assert result["asset"] == key
    wait_for(lambda: asset_events(key), timeout=30)
    event = asset_events(key)[0]
    upstream = {
        r["prefect.resource.id"] for r in event["related"] if r.get("prefect.resource.role") == "asset"
    }
    assert {
        f"duckdb://{database}/analytics_demo/{t}" for t in ("fct_orders", "customer_lifetime_value")
    } <= upstream
    dbt_keys = {e["resource"]["prefect.resource.id"] for e in asset_events("duckdb://")}
    assert f"duckdb://{database}/analytics_demo/fct_orders" in dbt_keys, "keys must match prefect-dbt's"


def test_a_failed_write_leaves_the_previous_scores(
    marts: DuckWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert customer_scores(return_state=True).is_completed()
    previous = _scores(marts)
    real_insert = scores_module._insert_rows

    def half_then_fail(connection, warehouse, relation, rows):  # type: ignore[no-untyped-def]
        real_insert(connection, warehouse, relation, rows[: len(rows) // 2])
        raise OSError("disk full while writing the scores")

    monkeypatch.setattr(scores_module, "_insert_rows", half_then_fail)
    # Different scores would be written (a shorter horizon), but the write fails half-way.
    state = customer_scores(horizon_days=20, return_state=True)

    assert state.is_failed()
    assert "disk full" in state.message
    assert _scores(marts) == previous


def test_missing_marts_fail_naming_the_table_and_elt(warehouse: DuckWarehouse) -> None:
    state = customer_scores(return_state=True)

    assert state.is_failed()
    assert (
        "analytics_demo.fct_orders and analytics_demo.customer_lifetime_value do not exist" in state.message
    )
    assert "the `elt` flow must run first" in state.message


def test_bad_parameters_fail_before_reading(warehouse: DuckWarehouse) -> None:
    state = customer_scores(analytics_schema="analytics; drop table x", return_state=True)
    assert state.is_failed() and "analytics_schema must be a plain SQL identifier" in state.message
    state = customer_scores(horizon_days=0, return_state=True)
    assert state.is_failed() and "horizon_days must be 1-365" in state.message


def test_waits_for_the_warehouse_lock_and_gives_up_without_writing(
    marts: DuckWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.concurrency.sync import concurrency

    from flows.warehouses.lock import ensure_warehouse_lock

    monkeypatch.setenv("ELT_LOCK_TIMEOUT_SECONDS", "2")
    started = time.monotonic()
    # An ELT run holds the lock (writing the marts) for longer than this run will wait.
    with concurrency(ensure_warehouse_lock("duckdb"), occupy=1, strict=True):
        state = customer_scores(return_state=True)

    assert state.is_failed(), state.message
    assert time.monotonic() - started >= 2
    assert marts.query(
        "select count(*) from information_schema.tables where table_name = 'customer_scores'"
    ) == [(0,)]
