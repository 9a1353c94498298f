"""How the elt flow fails: bad parameters and settings before any load, malformed files and failing
dbt tests with clear messages and an intact warehouse, retries only for transient errors, and the
warehouse lock that keeps two runs from writing at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect.concurrency.sync import concurrency

import flows.elt
import flows.ingest
from flows.elt import elt
from flows.sources.demo import DemoSource
from flows.sources.rest import RestSource
from flows.warehouses.lock import ensure_warehouse_lock
from tests.flows.elt_testkit import SAMPLE_DIR, DuckWarehouse, task_runs


def _sample_copy(tmp_path: Path, days: int = 3) -> Path:
    target = tmp_path / "shop"
    for day in range(1, days + 1):
        shutil.copytree(SAMPLE_DIR / f"day_{day}", target / f"day_{day}")
    return target


def _no_tables(warehouse: DuckWarehouse) -> bool:
    return not warehouse.path.exists()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": {"kind": "rest"}}, "base_url"),
        ({"source": {"kind": "sql", "tables": []}}, "at least 1 item"),
        (
            {"source": {"kind": "ftp"}},
            "does not match any of the expected tags: 'airbyte', 'demo', 'rest', 'sql'",
        ),
        ({"source": {"kind": "demo", "through_day": 0}}, "greater than or equal to 1"),
        ({"source": {"kind": "demo", "data_dir": "/nonexistent"}}, "has no day_<n> folders"),
        ({"source": {"kind": "rest", "base_url": "ftp://x"}}, "base_url must be an http(s) URL"),
        ({"source": {"kind": "rest", "base_url": "http://x/", "resource": ["orders"]}}, "Extra inputs"),
        (
            {"source": {"kind": "rest", "base_url": "http://x/", "resources": ["orders"]}},
            "does not load customers, payments",
        ),
    ],
)
def test_invalid_parameters_are_rejected_before_any_load(
    warehouse: DuckWarehouse, params: dict[str, object], expected: str
) -> None:
    state = elt(**params, return_state=True)  # type: ignore[arg-type]
    assert state.is_failed()
    assert expected in state.message or expected in str(state.result(raise_on_failure=False))
    assert _no_tables(warehouse)


def test_snowflake_without_credentials_fails_before_anything_runs(
    warehouse: DuckWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAREHOUSE", "snowflake")
    monkeypatch.setenv("SNOWFLAKE_ACCOUNT", "xy12345")
    for name in (
        "SNOWFLAKE_USER",
        "SNOWFLAKE_PASSWORD",
        "SNOWFLAKE_PRIVATE_KEY",
        "SNOWFLAKE_PRIVATE_KEY_PATH",
    ):
        monkeypatch.delenv(name, raising=False)
    state = elt(return_state=True)
    assert state.is_failed()
    for name in ("SNOWFLAKE_USER", "SNOWFLAKE_DATABASE", "SNOWFLAKE_WAREHOUSE", "SNOWFLAKE_PASSWORD"):
        assert name in state.message
    assert "SNOWFLAKE_ACCOUNT" not in state.message.split("missing:")[1]
    assert task_runs(state.state_details.flow_run_id) == []


def test_malformed_file_fails_and_last_good_tables_stay(warehouse: DuckWarehouse, tmp_path: Path) -> None:
    data = _sample_copy(tmp_path)
    good = elt(source=DemoSource(data_dir=str(data), through_day=1), return_state=True)
    assert good.is_completed(), good.message
    before = warehouse.snapshot()

    # Day 2 arrives with a payment whose amount is not a number.
    payments = data / "day_2" / "payments.csv"
    lines = payments.read_text().splitlines()
    fields = lines[1].split(",")
    lines[1] = ",".join([*fields[:3], "twelve", *fields[4:]])
    payments.write_text("\n".join(lines) + "\n")

    bad = elt(source=DemoSource(data_dir=str(data)), return_state=True)
    assert bad.is_failed()
    assert "malformed data, nothing was loaded" in bad.message
    assert "payments.csv" in bad.message and "twelve" in bad.message
    # Neither the raw tables (customers and orders of day 2 were fine) nor the marts changed.
    assert warehouse.snapshot() == before


def test_failing_dbt_test_fails_the_flow_naming_the_test(warehouse: DuckWarehouse, tmp_path: Path) -> None:
    data = _sample_copy(tmp_path, days=1)
    orders = data / "day_1" / "orders.csv"
    orders.write_text(orders.read_text().replace(",completed,", ",lost_in_transit,", 1))

    state = elt(source=DemoSource(data_dir=str(data)), return_state=True)
    assert state.is_failed()
    assert "accepted_values_stg_orders_status" in state.message
    runs = {tr.name: tr for tr in task_runs(state.state_details.flow_run_id)}
    failed_tests = [n for n, tr in runs.items() if n.startswith("test ") and tr.state.is_failed()]
    assert failed_tests == [
        "test accepted_values_stg_orders_status__placed__shipped__completed__returned__cancelled"
    ]
    # A failing test is not a transient error: the build ran once.
    assert [tr.run_count for n, tr in runs.items() if n.startswith("transform")] == [1]


def test_transient_errors_are_retried_and_bad_data_is_not(
    warehouse: DuckWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = flows.ingest.run_pipeline
    calls: list[int] = []

    def flaky(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer (injected)")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(flows.ingest, "run_pipeline", flaky)
    state = elt(source=DemoSource(through_day=1), transform=False, return_state=True)
    assert state.is_completed(), state.message
    (ingest_run,) = [tr for tr in task_runs(state.state_details.flow_run_id) if tr.name.startswith("ingest")]
    assert ingest_run.run_count == 3
    assert warehouse.count("raw_demo.orders") == 480


def test_a_second_run_waits_for_the_warehouse_lock(
    warehouse: DuckWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = ensure_warehouse_lock("duckdb")
    monkeypatch.setenv("ELT_LOCK_TIMEOUT_SECONDS", "3")  # read when the run starts
    # Another run holds the warehouse: this one must not start writing.
    with concurrency(lock, occupy=1, strict=True):
        blocked = elt(transform=False, return_state=True)
    assert blocked.is_failed()
    assert "concurrency" in blocked.message.lower() or "timeout" in blocked.message.lower()
    assert _no_tables(warehouse)
    # Released: the next run goes through.
    assert elt(source=DemoSource(through_day=1), transform=False, return_state=True).is_completed()


def test_rest_parameters_hide_no_secret() -> None:
    # The token is a credential name, never a value in the (UI-visible) parameters.
    assert "token" not in RestSource.model_json_schema()["properties"]
    assert RestSource.model_json_schema()["properties"]["token_secret"]["default"] == "REST_API_TOKEN"
