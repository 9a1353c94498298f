"""Platform benchmark: start-up time, idle memory, and trigger-to-Running/Completed latency.

Runs a fresh copy of the checkout as its own compose project (like the e2e test), prints figures,
asserts nothing. Run it with ./scripts/bench (images are built first, so `up` is timed cold
but with images present).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.stack import PrefectApi, Stack, copy_checkout

DEPLOYMENT = ("platform-check", "self-check")
TRIVIAL = {"fail_times": 0}


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def latencies(run: dict[str, Any]) -> tuple[float, float]:
    """Seconds from creation (the trigger) to Running and to the final state, server clock."""
    created = parse_time(run["created"])
    return parse_time(run["start_time"]) - created, parse_time(run["end_time"]) - created


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):5.2f} s  p95 {p95:5.2f} s  max {ordered[-1]:5.2f} s"


def memory(stack: Stack) -> list[tuple[str, float]]:
    names = stack.compose("ps", "--format", "{{.Name}}").stdout.split()
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        name, usage = line.split(" ", 1)
        amount = usage.split("/")[0].strip()
        factor = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[amount[-3:]]
        rows.append((name.removeprefix(f"{stack.project}-"), float(amount[:-3]) * factor))
    return rows


def report(label: str, runs: list[dict[str, Any]]) -> None:
    states = {run["state_type"] for run in runs}
    to_running, to_done = zip(*(latencies(run) for run in runs), strict=True)
    print(f"{label}: {len(runs)} runs, states {sorted(states)}")
    print(f"  trigger -> Running    {quantiles(list(to_running))}")
    print(f"  trigger -> Completed  {quantiles(list(to_done))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle-seconds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pp-bench-") as tmp:
        root = Path(tmp)
        copy_checkout(root)
        stack = Stack(root)
        try:
            # Images first, so `up` is timed with images present (as on any start after the first).
            subprocess.run(
                ["docker", "compose", "--env-file", ".env.example", "build", "--quiet"],
                cwd=root,
                env={**stack.env, "PLATFORM_DIR": str(root)},
                check=True,
            )
            started = time.monotonic()
            stack.run("./scripts/up", "--no-build")
            print(f"cold `up --wait` (images built): {time.monotonic() - started:.1f} s")
            time.sleep(args.idle_seconds)
            rows = memory(stack)
            print(f"idle memory after {args.idle_seconds} s:")
            for name, mib in rows:
                print(f"  {name:<28} {mib:7.1f} MiB")
            print(f"  {'total':<28} {sum(m for _, m in rows):7.1f} MiB")
            with stack.client() as http:
                api = PrefectApi(http)
                api.wait(api.trigger(*DEPLOYMENT, TRIVIAL))  # warm-up: first run pays the page cache
                sequential = [api.wait(api.trigger(*DEPLOYMENT, TRIVIAL)) for _ in range(args.runs)]
                report("sequential", sequential)
                ids = [api.trigger(*DEPLOYMENT, TRIVIAL) for _ in range(args.runs)]
                burst = [api.wait(run_id, timeout=900) for run_id in ids]
                report(f"{args.runs} at once (worker limit from .env)", burst)
        finally:
            stack.down()


if __name__ == "__main__":
    main()
