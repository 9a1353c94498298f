"""Benchmark of the demo ELT at several scales: ingestion rows/s, total ELT seconds, peak RSS of the
flow run, and the flow's ingest time against a bare dlt pipeline on the same data.

    uv run python tests/bench/bench_elt.py                      # 10k, 100k, 1M orders
    uv run python tests/bench/bench_elt.py --orders 10000 50000

Not a pytest module (no test_ prefix). Per scale it generates the demo shop's CSVs (the committed
sample's generator, 3 days), then runs, each in its own fresh process and warehouse:
  * bare dlt: ``dlt.pipeline(...).run(demo_shop(...))``, nothing else;
  * the flow: ``elt(source={"kind": "demo"})`` against a Prefect server started once for the benchmark, as a
    flow-run container would run it (ingest, dbt build, artifacts).
Peak RSS is the flow process's maximum resident set (wait4's ru_maxrss), the figure a container
memory limit is compared with. Timings on a shared 2-core machine vary by 10-20% between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support import REPO
from tests.support.prefect_server import prefect_server

DEFAULT_SCALES = (10_000, 100_000, 1_000_000)


def _run_measured(code: str, env: dict[str, str], cwd: Path) -> tuple[dict[str, Any], float, int]:
    """Runs ``code`` in a fresh Python in ``cwd``; returns its JSON output, wall seconds and peak RSS
    in bytes. ``cwd`` is the benchmark's own folder: Prefect's settings read a `.env` in the working
    directory (3 times per settings model: 2.4 s of every start with the stack's 273-line one on 2
    cores), and a flow-run container's working directory has none."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{stderr.decode()[-4000:]}")
    last_line = stdout.decode().strip().splitlines()[-1]
    return json.loads(last_line), seconds, usage.ru_maxrss * 1024


# Both timers start before dlt and the source module are imported: the flow imports them inside its
# ingest task (to keep flow start-up light), so that import is part of both measurements alike.
BARE_DLT = """
import json, os, tempfile, time
from pathlib import Path
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
os.environ["NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"] = "true"
started = time.perf_counter()
import dlt
from flows.sources.demo import demo_shop
destination = dlt.destinations.duckdb(os.environ["DUCKDB_PATH"])
pipeline = dlt.pipeline("bare_demo", pipelines_dir=tempfile.mkdtemp(), destination=destination,
                        dataset_name="raw_demo")
pipeline.run(demo_shop(Path(os.environ["DEMO_DATA_DIR"])))
counts = pipeline.last_trace.last_normalize_info.row_counts
rows = sum(n for t, n in counts.items() if not t.startswith("_dlt"))
print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))
"""

FLOW_RUN = """
import json, os, time
started = time.perf_counter()
from flows.elt import elt
result = elt(source={"kind": "demo"}, transform=os.environ["BENCH_TRANSFORM"] == "1")
print(json.dumps({
    "in_flow_seconds": time.perf_counter() - started,
    "ingest_seconds": result["ingest_seconds"],
    "transform_seconds": result.get("transform_seconds"),
    "rows": sum(result["ingest"]["rows_loaded"].values()),
    "mart_rows": result.get("mart_rows"),
}))
"""


def bench_scale(orders: int, work: Path, api_url: str, repeats: int) -> dict[str, Any]:
    from flows.sample_data.generate_shop import generate

    data = work / f"shop-{orders}"
    started = time.perf_counter()
    generate(data, orders)
    generated = time.perf_counter() - started
    base_env = {**os.environ, "DEMO_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}

    def flow_env(name: str, transform: bool) -> dict[str, str]:
        # A fresh warehouse and data dir per run: every run loads everything.
        return {
            **base_env,
            "PREFECT_API_URL": api_url,
            "WAREHOUSE": "duckdb",
            "DUCKDB_PATH": str(work / f"{name}.duckdb"),
            "DATA_DIR": str(work / f"data-{name}"),
            "PREFECT_LOCAL_STORAGE_PATH": str(work / f"results-{name}"),
            "BENCH_TRANSFORM": "1" if transform else "0",
        }

    # Ingest ratio: median of `repeats` bare dlt runs against median of `repeats` ingest-only flow
    # runs (each a fresh process and warehouse), alternated so load on the host hits both alike.
    bare_s: list[float] = []
    flow_ingest_s: list[float] = []
    bare_rss = 0
    for i in range(repeats):
        bare_env = {**base_env, "DUCKDB_PATH": str(work / f"bare-{orders}-{i}.duckdb")}
        bare, _, rss = _run_measured(BARE_DLT, bare_env, work)
        bare_s.append(bare["seconds"])
        bare_rss = max(bare_rss, rss)
        ingest_only, _, _ = _run_measured(FLOW_RUN, flow_env(f"ingest-{orders}-{i}", transform=False), work)
        flow_ingest_s.append(ingest_only["ingest_seconds"])
    # The whole ELT once: total seconds and the flow process's peak RSS.
    flow, flow_wall, flow_rss = _run_measured(FLOW_RUN, flow_env(f"elt-{orders}", transform=True), work)
    return {
        "orders": orders,
        "rows": flow["rows"],
        "generate_s": generated,
        "bare_dlt_s": statistics.median(bare_s),
        "bare_dlt_runs_s": bare_s,
        "bare_dlt_rss": bare_rss,
        "flow_ingest_s": statistics.median(flow_ingest_s),
        "flow_ingest_runs_s": flow_ingest_s,
        "elt_ingest_s": flow["ingest_seconds"],
        "flow_transform_s": flow["transform_seconds"],
        "flow_in_flow_s": flow["in_flow_seconds"],
        "flow_process_s": flow_wall,
        "flow_rss": flow_rss,
        "mart_rows": flow["mart_rows"],
    }


def _print(results: list[dict[str, Any]]) -> None:
    mib = 1024 * 1024
    header = (
        f"{'orders':>9} {'rows':>9} {'ingest rows/s':>13} {'flow ingest s':>13} {'bare dlt s':>10} "
        f"{'ratio':>6} {'dbt s':>7} {'ELT s':>7} {'process s':>9} {'peak RSS':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['orders']:>9,} {r['rows']:>9,} {r['rows'] / r['flow_ingest_s']:>13,.0f} "
            f"{r['flow_ingest_s']:>13.2f} {r['bare_dlt_s']:>10.2f} "
            f"{r['flow_ingest_s'] / r['bare_dlt_s']:>6.2f} "
            f"{r['flow_transform_s']:>7.2f} {r['flow_in_flow_s']:>7.2f} {r['flow_process_s']:>9.2f} "
            f"{r['flow_rss'] / mib:>6.0f} MiB"
        )
    print()
    print("rows: rows ingested (3 days of customers, orders, payments). flow ingest s: the ingest task as")
    print("the flow sees it (median of ingest-only flow runs); bare dlt s: the same dlt pipeline without")
    print("Prefect (median); ratio: flow ingest / bare dlt. dbt s, ELT s (flow call to return), process s")
    print("(with Python start and imports), peak RSS (max resident set of the flow-run process): one full")
    print("ELT run per scale.")
    for r in results:
        print(
            f"  {r['orders']:>9,} orders: bare dlt peak RSS {r['bare_dlt_rss'] / mib:.0f} MiB, "
            f"marts {r['mart_rows']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--repeats", type=int, default=3, help="runs per ingest measurement (median)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench-elt-") as tmp:
        work = Path(tmp)
        with prefect_server(work / "prefect-home") as api_url:
            results = []
            for orders in args.orders:
                print(f"running {orders:,} orders ...", file=sys.stderr, flush=True)
                results.append(bench_scale(orders, work, api_url, args.repeats))
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
