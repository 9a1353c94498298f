"""100 runs at once: a burst of flow runs of a trivial deployment, created together, at two worker
concurrencies, in one stack.

    uv run python -m tests.bench.bench_burst                    # or ./scripts/bench burst
    uv run python -m tests.bench.bench_burst --runs 100 --concurrency 2 4

Starts a fresh copy of the checkout as its own compose project. For each WORKER_CONCURRENCY (set in
the copy's .env, then `./scripts/up --no-build`, which recreates only the worker), it creates
`--runs` runs of platform-check/self-check (fail_times=0: one task, a persisted result, a log line
and an artifact) as fast as the API takes them, and waits until every one is final. Prints:
  * final states, and runs lost or run twice: each run must have reached Running exactly once
    (run_count 1) and had exactly one container started (Docker's events, by the run's label);
  * total time from the first create to the last end, runs per minute, trigger -> Running and
    -> Completed quantiles;
  * peak stack memory: the largest sum over the project's containers and flow-run containers at
    one moment (cgroup samples every 0.25 s), and each service's own peak;
  * Postgres growth: the database's size (pg_database_size, after a 15 s settle for the events the
    server writes late) before and after, per 1,000 runs.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from tests.bench.measure import (
    MIB,
    FlowRunEvents,
    StackMemory,
    container_summary,
    load,
    parse_time,
    polling,
    quantiles,
    remove_flow_runs,
)
from tests.support.stack import TERMINAL, PrefectApi, Stack, copy_checkout

DEPLOYMENT = ("platform-check", "self-check")
TRIVIAL = {"fail_times": 0}
SETTLE_SECONDS = 15


def set_setting(stack: Stack, key: str, value: str) -> None:
    stack.run(
        "python3", "scripts/lib/envfile.py", "ensure", "--env", ".env", "--example", ".env.example",
        "--force", f"{key}={value}",
    )  # fmt: skip


def database_bytes(stack: Stack) -> int:
    out = stack.compose(
        "exec", "-T", "postgres", "psql", "-qtAU", "prefect", "-c", "SELECT pg_database_size('prefect')"
    ).stdout
    return int(out.strip())


def wait_all(api: PrefectApi, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Every run once it is final (one filter call per poll, not one call per run)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = []
        for start in range(0, len(ids), 200):
            body = {"flow_runs": {"id": {"any_": ids[start : start + 200]}}, "limit": 200}
            runs += api.post("/flow_runs/filter", body)
        if all(run["state_type"] in TERMINAL for run in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(2)


def burst(stack: Stack, api: PrefectApi, runs: int, concurrency: int) -> None:
    size_before = database_bytes(stack)
    deployment_id = api.deployment(*DEPLOYMENT)["id"]

    burst_key = uuid.uuid4().hex

    def create(index: int) -> str:
        # The idempotency key makes a retry after a timeout (a loaded server) return the same run.
        body = {"parameters": TRIVIAL, "idempotency_key": f"{burst_key}-{index}"}
        for attempt in range(3):
            try:
                return str(api.post(f"/deployments/{deployment_id}/create_flow_run", body)["id"])
            except httpx.TimeoutException:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    with polling(StackMemory(stack.project)) as memory, polling(FlowRunEvents()) as events:
        started = time.time()
        with ThreadPoolExecutor(max_workers=4) as pool:
            ids = list(pool.map(create, range(runs)))
        created = time.time() - started
        final = wait_all(api, ids, timeout=60 + runs * 20)
    time.sleep(SETTLE_SECONDS)
    size_after = database_bytes(stack)
    states = collections.Counter(run["state_type"] for run in final)
    twice = [run["id"] for run in final if run["run_count"] > 1]
    per_run = {run_id: events.count(run_id, "start") for run_id in ids}
    no_container = [i for i in ids if per_run[i] == 0]
    many = [i for i in ids if per_run[i] > 1]
    done = [run for run in final if run["end_time"]]
    first = min(parse_time(run["created"]) for run in final)
    last = max(parse_time(run["end_time"]) for run in done)
    minutes = (last - first) / 60
    print(f"WORKER_CONCURRENCY={concurrency}: {runs} runs created in {created:.1f} s ({load()} at end)")
    print(
        f"  states {dict(states)}; ran more than once (run_count > 1): {len(twice)}; containers started: "
        f"{sum(per_run.values())} (none: {len(no_container)}, more than one: {len(many)})"
    )
    print(f"  first create -> last end: {last - first:.1f} s, {len(done) / minutes:.1f} runs/min")
    print(
        "  trigger -> Running    "
        + quantiles([parse_time(r["start_time"]) - parse_time(r["created"]) for r in done])
    )
    print(
        "  trigger -> Completed  "
        + quantiles([parse_time(r["end_time"]) - parse_time(r["created"]) for r in done])
    )
    print(
        f"  peak stack memory (sum at one moment, {memory.samples} samples): "
        f"{memory.peak_total / MIB:.0f} MiB"
    )
    print(
        "  peak per container: "
        + ", ".join(f"{name} {used / MIB:.0f}" for name, used in sorted(memory.peak_by_name.items()))
        + " MiB"
    )
    growth = size_after - size_before
    print(
        f"  Postgres: {size_before / MIB:.1f} -> {size_after / MIB:.1f} MiB, "
        f"{growth / runs * 1000 / MIB:.1f} MiB per 1,000 runs"
    )
    restarts = {
        name: s for name, s in container_summary(stack.project).items() if s["restarts"] or s["oom_killed"]
    }
    print(f"  services restarted or OOM-killed: {restarts or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    with TemporaryDirectory(prefix="pp-bench-burst-") as tmp:
        root = Path(tmp)
        copy_checkout(root)
        stack = Stack(root)
        try:
            stack.up()
            with stack.client() as http:
                http.timeout = httpx.Timeout(120)  # a burst keeps the server busy
                api = PrefectApi(http)
                api.wait(api.trigger(*DEPLOYMENT, TRIVIAL))  # warm-up: the first run pays the page cache
                for concurrency in args.concurrency:
                    set_setting(stack, "WORKER_CONCURRENCY", str(concurrency))
                    stack.run("./scripts/up", "--no-build")
                    burst(stack, api, args.runs, concurrency)
        finally:
            remove_flow_runs(stack.project)
            stack.down()


if __name__ == "__main__":
    main()
