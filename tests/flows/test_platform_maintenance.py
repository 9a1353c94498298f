"""flows/platform_maintenance.py: retention on the data volume (old results, dbt output and scratch
folders go; recent ones, the warehouse, dbt's packages and anything else stay)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flows.platform_maintenance import prune_data, retention_days

OLD = time.time() - 100 * 86400


def touch(path: Path, mtime: float | None = None, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FLOW_RUN_RETENTION_DAYS", raising=False)
    return tmp_path


def test_prunes_only_old_results_dbt_output_and_scratch(volume: Path, prefect_server: None) -> None:
    old_result = touch(volume / "results" / "old", OLD)
    new_result = touch(volume / "results" / "new")
    old_target = touch(volume / "dbt" / "shop" / "duckdb-analytics" / "target" / "run_results.json", OLD)
    old_log = touch(volume / "dbt" / "shop" / "duckdb-analytics" / "logs" / "dbt.log.1", OLD)
    new_target = touch(volume / "dbt" / "shop" / "duckdb-analytics" / "target" / "manifest.json")
    package = touch(volume / "dbt" / "shop" / "dbt_packages" / "dbt_utils" / "macros" / "x.sql", OLD)
    warehouse = touch(volume / "warehouse.duckdb", OLD)
    key = touch(volume / "keys" / "snowflake.pem", OLD)
    killed = volume / "dlt-work" / "dlt-killed"
    touch(killed / "extract" / "part.parquet", OLD)
    os.utime(killed, (OLD, OLD))
    running = volume / "dlt-work" / "dlt-running"
    touch(running / "part.parquet")

    summary = prune_data()

    assert summary == {
        "retention_days": 90,
        "result_files": 1,
        "dbt_files": 2,
        "bytes": 3,
        "scratch_folders": 1,
    }
    for gone in (old_result, old_target, old_log, killed):
        assert not gone.exists(), gone
    for kept in (new_result, new_target, package, warehouse, key, running):
        assert kept.exists(), kept
    assert list(old_log.parent.iterdir()) == []


def test_the_horizon_follows_the_setting(
    volume: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_RUN_RETENTION_DAYS", "200")
    kept = touch(volume / "results" / "hundred-days-old", OLD)
    assert prune_data()["result_files"] == 0 and kept.exists()
    assert prune_data(retention=30)["result_files"] == 1 and not kept.exists()


@pytest.mark.parametrize("bad", ["0", "-5", "ninety"])
def test_a_bad_setting_is_refused(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOW_RUN_RETENTION_DAYS", bad)
    with pytest.raises(ValueError, match="FLOW_RUN_RETENTION_DAYS"):
        retention_days()
