"""Platform maintenance: retention on the data volume, matching the server's flow-run retention.

The server's vacuum service deletes flow runs older than FLOW_RUN_RETENTION_DAYS (with their task
runs, logs and artifacts); this flow deletes what those runs left on the data volume past the same
horizon: persisted results (results/), dbt's output (dbt/<project>/<target>-<schema>/target and
logs; never its packages or profiles), and scratch folders that killed runs left in dlt-work/ (after
a day: no run lasts that long). The warehouse and anything else on the volume are never touched.
The `platform-maintenance/prune-data` deployment runs it daily; standard library and Prefect only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

DEFAULT_RETENTION_DAYS = 90
SCRATCH_DAYS = 1


def retention_days(value: int | None = None) -> int:
    raw = (
        value if value is not None else (os.environ.get("FLOW_RUN_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS)
    )
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"FLOW_RUN_RETENTION_DAYS must be a whole number of days, got {raw!r}") from None
    if days < 1:
        raise ValueError(f"FLOW_RUN_RETENTION_DAYS must be at least 1, got {days}")
    return days


def prune_files(root: Path, older_than: float) -> tuple[int, int]:
    """Deletes files under ``root`` last modified before ``older_than`` (epoch seconds), then the
    folders left empty; returns (files, bytes) deleted."""
    files = size = 0
    if not root.is_dir():
        return 0, 0
    for folder, dirs, names in os.walk(root, topdown=False):
        for name in names:
            path = Path(folder) / name
            try:
                stat = path.lstat()
                if stat.st_mtime < older_than:
                    path.unlink()
                    files, size = files + 1, size + stat.st_size
            except FileNotFoundError:
                continue  # removed meanwhile
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(folder) / name).rmdir()  # only when empty
    return files, size


def prune_scratch(root: Path, older_than: float) -> int:
    """Deletes dlt's per-run scratch folders (dlt-*) not modified since ``older_than``."""
    removed = 0
    if root.is_dir():
        for entry in root.glob("dlt-*"):
            if entry.is_dir() and entry.stat().st_mtime < older_than:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


@flow(name="platform-maintenance", log_prints=True)
def prune_data(retention: int | None = None) -> dict[str, int]:
    """Deletes results and dbt files older than FLOW_RUN_RETENTION_DAYS (or ``retention`` days), and
    scratch folders of killed runs, from the data volume."""
    days = retention_days(retention)
    data_dir = Path(os.environ.get("DATA_DIR") or "data")
    now = time.time()
    horizon = now - days * 86400
    results = prune_files(data_dir / "results", horizon)
    dbt = (0, 0)
    for output in sorted(data_dir.glob("dbt/*/*/target")) + sorted(data_dir.glob("dbt/*/*/logs")):
        files, size = prune_files(output, horizon)  # dbt's output only: never its packages or profiles
        dbt = (dbt[0] + files, dbt[1] + size)
    scratch = prune_scratch(data_dir / "dlt-work", now - SCRATCH_DAYS * 86400)
    summary = {
        "retention_days": days,
        "result_files": results[0],
        "dbt_files": dbt[0],
        "bytes": results[1] + dbt[1],
        "scratch_folders": scratch,
    }
    get_run_logger().info("Pruned the data volume: %s", summary)
    create_markdown_artifact(
        key="platform-maintenance",
        markdown=(
            f"# Data volume retention ({days} days)\n\n| removed | count |\n|---|---:|\n"
            f"| result files | {results[0]} |\n| dbt files | {dbt[0]} |\n"
            f"| scratch folders | {scratch} |\n| bytes freed | {summary['bytes']} |\n"
        ),
        description="What the daily retention removed from the data volume",
    )
    return summary
