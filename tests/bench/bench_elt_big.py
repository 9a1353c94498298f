"""The demo ELT at 10x the data inside one flow-run container with the default memory limit.

    uv run python -m tests.bench.bench_elt_big                  # 10M orders, or ./scripts/bench elt-big
    uv run python -m tests.bench.bench_elt_big --orders 2000000
    uv run python -m tests.bench.bench_elt_big --data /tmp/shop   # CSVs made by generate_shop --out

Generates the demo shop's CSVs for `--orders` orders (3 days; 10M orders are about 25M rows and
1.9 GB of CSV), starts a fresh copy of the checkout as its own compose project (its worker sized by
`./scripts/up`: FLOW_RUN_MEMORY_LIMIT 1g on a host with room for it), copies the CSVs onto the
stack's data volume and runs elt/daily on them once, with full_refresh: a real flow-run container,
its memory limit and swap off, the platform's own settings (DUCKDB_MEMORY_LIMIT). Meanwhile the
container's memory (cgroup usage minus inactive file cache, as `docker stats` counts it) is sampled
every 0.25 s. Then the same CSVs are loaded by a bare dlt pipeline twice, for the flow/bare ratio of
the ingest: in a container of the flow-run image with the same memory limit (what the same box
gives a pipeline without the platform), and in a process on the host without any limit. Prints
figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.bench_elt import BARE_DLT, _run_measured
from tests.bench.measure import (
    FLOW_RUN_LABEL,
    MIB,
    Poller,
    StackMemory,
    cgroup_dir,
    cgroup_memory,
    docker,
    load,
    polling,
    remove_flow_runs,
    task_spans,
)
from tests.support import REPO
from tests.support.stack import PrefectApi, Stack, copy_checkout

IN_VOLUME = "/data/bench-shop"


class RunMemory(Poller):
    """The peak memory of one container (a flow run's, by its run id, or any, by a `docker ps`
    filter): in use as `docker stats` counts it (without inactive file cache), and the cgroup's own
    high-water mark (cgroup v1, with all cache)."""

    def __init__(self, run_id: str = "", interval: float = 0.25, match: str = "") -> None:
        super().__init__(interval)
        self.match = match or f"label={FLOW_RUN_LABEL}={run_id}"
        self.path: Path | None = None
        self.peak = 0
        self.high_water = 0
        self.samples: list[tuple[float, int]] = []  # (epoch seconds, bytes in use)
        self.anon = 0  # peak of the processes' own memory (cgroup v1 total_rss: no file cache)

    def probe(self) -> None:
        if self.path is None:
            found = docker("ps", "-q", "--no-trunc", "--filter", self.match).split()
            self.path = cgroup_dir(found[0]) if found else None
            if self.path is None:
                return
        used = cgroup_memory(self.path)
        stat = dict(line.split() for line in (self.path / "memory.stat").read_text().splitlines())
        self.anon = max(self.anon, int(stat.get("total_rss", stat.get("anon", 0))))
        self.samples.append((time.time(), used))
        self.peak = max(self.peak, used)
        if (self.path / "memory.max_usage_in_bytes").exists():
            self.high_water = max(self.high_water, int((self.path / "memory.max_usage_in_bytes").read_text()))


def csv_rows(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f) - 1  # the header


def copy_into_volume(stack: Stack, data: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--rm", "-v", f"{stack.project}-data:/data", "-v", f"{data}:/src:ro",
         "debian:bookworm-slim", "sh", "-c",
         f"rm -rf {IN_VOLUME} && cp -r /src {IN_VOLUME} && chown -R 1000:1000 {IN_VOLUME}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def run_in_stack(stack: Stack) -> dict[str, Any]:
    parameters = {"source": {"kind": "demo", "data_dir": IN_VOLUME}, "full_refresh": True}
    with stack.client() as http, polling(StackMemory(stack.project)) as memory:
        api = PrefectApi(http)
        started = time.perf_counter()
        run_id = api.trigger("elt", "daily", parameters)
        with polling(RunMemory(run_id)) as container:
            run = api.wait(run_id, timeout=3600)
        wall = time.perf_counter() - started
        windows = task_spans(api, run["id"])
    steps: dict[str, float] = {}
    for name, (start, end) in windows.items():
        steps[name] = end - start
        in_window = [used for at, used in container.samples if start <= at <= end]
        steps[f"{name} peak"] = max(in_window, default=0)
    return {
        "state": run["state_type"],
        "message": (run.get("state") or {}).get("message") or "",
        "wall_s": wall,
        "peak_flow_run": container.peak,
        "high_water": container.high_water,
        "anon": container.anon,
        "peak_stack": memory.peak_total,
        **steps,
    }


def worker_setting(stack: Stack, name: str) -> str:
    """A setting as the stack's worker got it (after `./scripts/up` sized it, or .env set it)."""
    return stack.compose("exec", "-T", "prefect-worker", "printenv", name).stdout.strip()


def bare_dlt_in_container(image: str, project: str, data: Path, work: Path, limit: str) -> dict[str, Any]:
    """The same bare dlt pipeline in a container of the flow-run image with the flow run's memory
    limit (swap off), as a team would run its pipeline on the same box without the platform:
    DuckDB at its own default memory limit (80% of what it detects), nothing else set."""
    name = f"{project}-bare-dlt"
    out = work / "bare-in-container"
    out.mkdir()
    os.chown(out, 1000, 1000)  # the image's user (uid 1000, as on the data volume) writes the warehouse
    command = [
        "docker", "run", "--name", name, "--memory", limit, "--memory-swap", limit,
        "-v", f"{REPO / 'flows'}:/opt/prefect/flows:ro", "-v", f"{data}:/src:ro", "-v", f"{out}:/out",
        "-e", "DEMO_DATA_DIR=/src", "-e", "DUCKDB_PATH=/out/bare.duckdb", image, "python", "-c", BARE_DLT,
    ]  # fmt: skip
    started = time.perf_counter()
    with polling(RunMemory(match=f"name={name}")) as memory:
        proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    state = json.loads(docker("inspect", "--format", "{{json .State}}", name))
    docker("rm", "-f", name)
    result: dict[str, Any] = {"wall_s": wall, "peak": memory.peak, "anon": memory.anon}
    if proc.returncode == 0:
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    else:
        result["failed"] = ("OOM-killed" if state.get("OOMKilled") else f"exit {proc.returncode}") + (
            f": {proc.stderr.strip().splitlines()[-1][:200]}" if proc.stderr.strip() else ""
        )
    return result


def bare_dlt(data: Path, work: Path) -> tuple[dict[str, Any], int]:
    env = {**os.environ, "DEMO_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
    env["DUCKDB_PATH"] = str(work / "bare.duckdb")
    result, _, rss = _run_measured(BARE_DLT, env)
    return result, rss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--data", type=Path, help="CSVs made before (generate_shop --out); else generated")
    args = parser.parse_args()
    from flows.sample_data.generate_shop import generate

    with tempfile.TemporaryDirectory(prefix="pp-bench-big-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        data = args.data or work / "shop"
        if args.data is None:
            print(f"generating {args.orders:,} orders ({load()}) ...", flush=True)
        started = time.perf_counter()
        counts = generate(data, args.orders) if args.data is None else {}
        rows = sum(counts.values()) or sum(csv_rows(p) for p in data.rglob("*.csv"))
        size = sum(p.stat().st_size for p in data.rglob("*.csv"))
        print(
            f"  {rows:,} rows, {size / MIB:,.0f} MiB of CSV in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        root = work / "checkout"
        root.mkdir()
        copy_checkout(root)
        stack = Stack(root)
        try:
            stack.up()
            limit = worker_setting(stack, "FLOW_RUN_MEMORY_LIMIT")
            print(
                f"stack up; FLOW_RUN_MEMORY_LIMIT={limit}; copying the CSVs onto the data volume ...",
                flush=True,
            )
            print(
                f"  copied in {copy_into_volume(stack, data):.0f} s; running elt/daily ({load()}) ...",
                flush=True,
            )
            flow = run_in_stack(stack)
            print(f"bare dlt in a flow-run image container, limit {limit} ({load()}) ...", flush=True)
            image = worker_setting(stack, "FLOW_RUN_IMAGE")
            contained = bare_dlt_in_container(image, stack.project, data, work, limit)
        finally:
            remove_flow_runs(stack.project)
            stack.down()
        print(f"bare dlt on the host ({load()}) ...", flush=True)
        bare, bare_rss = bare_dlt(data, work)
    print()
    print(f"elt/daily on {args.orders:,} orders ({rows:,} rows), one flow-run container, limit {limit}:")
    print(f"  state              {flow['state']} {flow['message'][:200]}")
    print(f"  trigger -> end     {flow['wall_s']:.0f} s")
    if "ingest" in flow:
        print(
            f"  ingest             {flow['ingest']:.0f} s, {rows / flow['ingest']:,.0f} rows/s, "
            f"peak {flow['ingest peak'] / MIB:.0f} MiB"
        )
    if "transform" in flow:
        print(
            f"  dbt build          {flow['transform']:.0f} s, {rows / flow['transform']:,.0f} input rows/s, "
            f"peak {flow['transform peak'] / MIB:.0f} MiB"
        )
    print(
        f"  peak memory        flow-run container {flow['peak_flow_run'] / MIB:.0f} MiB in use "
        f"(processes' own {flow['anon'] / MIB:.0f} MiB; cgroup high-water mark with all cache "
        f"{flow['high_water'] / MIB:.0f} MiB), "
        f"stack {flow['peak_stack'] / MIB:.0f} MiB"
    )
    print(
        f"bare dlt (process on the host): {bare['seconds']:.0f} s, "
        f"{bare['rows'] / bare['seconds']:,.0f} rows/s, peak RSS {bare_rss / MIB:.0f} MiB"
    )
    if "seconds" in contained:
        print(
            f"bare dlt (container of the flow-run image, limit {limit}): {contained['seconds']:.0f} s, "
            f"{contained['rows'] / contained['seconds']:,.0f} rows/s, peak {contained['peak'] / MIB:.0f} MiB "
            f"in use (processes' own {contained['anon'] / MIB:.0f} MiB)"
        )
    else:
        print(
            f"bare dlt (container of the flow-run image, limit {limit}): failed after "
            f"{contained['wall_s']:.0f} s, {contained['failed']}"
        )
    if "ingest" in flow:
        print(f"flow ingest / bare dlt on the host, unbounded: {flow['ingest'] / bare['seconds']:.2f}")
        if "seconds" in contained:
            ratio = flow["ingest"] / contained["seconds"]
            print(f"flow ingest / bare dlt in the same memory limit: {ratio:.2f}")


if __name__ == "__main__":
    main()
