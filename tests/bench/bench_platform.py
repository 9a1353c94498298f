"""Platform benchmark: image build, first start, a second `up`, migrations, idle memory, and
trigger-to-Running/Completed latency of a trivial run.

    uv run python -m tests.bench.bench_platform             # or ./scripts/bench platform

Runs a fresh copy of the checkout as its own compose project and port (like the e2e tests), prints
figures, asserts nothing. In order:
  * build: `docker compose build` on the fresh copy (Docker's layer cache is the host's: on a host
    that built these images before, this is the rebuild every `up` does), the build context each
    image sent and how many images were built;
  * first start: `./scripts/up` with images built and no volumes, until the UI answers
    (GET / and /api/ready 200) and until `up` returns, with when each service got healthy or done;
  * second `up` with nothing changed;
  * migrations: Prefect's `database upgrade` on an empty database of the stack's Postgres, the same
    on the migrated one (the check every `up` pays), and `prefect version` (interpreter + imports);
  * image sizes, idle memory per container, idle CPU per container and of the whole machine (Docker's
    daemons run the healthchecks), and `--runs` sequential runs of platform-check.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.measure import (
    Timeline,
    UrlWatch,
    container_cpu_seconds,
    docker,
    load,
    machine_busy_seconds,
    parse_time,
    polling,
    quantiles,
    remove_flow_runs,
)
from tests.support import REPO
from tests.support.stack import PrefectApi, Stack, copy_checkout, env_value

DEPLOYMENT = ("platform-check", "self-check")
TRIVIAL = {"fail_times": 0}
# Start order: what a user waits for, service by service.
MILESTONES = (
    ("postgres", "healthy"),
    ("prefect-migrate", "exited"),
    ("prefect-server", "healthy"),
    ("prefect-init", "exited"),
    ("prefect-deploy", "exited"),
    ("prefect-worker", "healthy"),
)


def latencies(run: dict[str, Any]) -> tuple[float, float]:
    """Seconds from creation (the trigger) to Running and to the final state, server clock."""
    created = parse_time(run["created"])
    return parse_time(run["start_time"]) - created, parse_time(run["end_time"]) - created


def memory(stack: Stack) -> list[tuple[str, float]]:
    names = stack.compose("ps", "--format", "{{.Name}}").stdout.split()
    out = docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names)
    rows = []
    for line in out.splitlines():
        name, usage = line.split(" ", 1)
        amount = usage.split("/")[0].strip()
        factor = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[amount[-3:]]
        rows.append((name.removeprefix(f"{stack.project}-"), float(amount[:-3]) * factor))
    return rows


def idle_cpu(stack: Stack, seconds: float) -> None:
    """Each container's CPU and the whole machine's over ``seconds`` of an idle stack, as % of one core.

    What is not in a container is mostly Docker's own work (containerd's shims, runc) starting the
    healthcheck probes; on a host that runs nothing else the machine's figure is the stack's cost.
    """
    listing = stack.compose("ps", "--no-trunc", "--format", "{{.Name}} {{.ID}}").stdout
    full = dict(line.split() for line in listing.splitlines())
    before = {name: container_cpu_seconds(cid) for name, cid in full.items()}
    machine, started = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    machine = (machine_busy_seconds() - machine) / elapsed * 100
    print(f"idle CPU over {elapsed:.0f} s, % of one core ({load()}):")
    total = 0.0
    for name, cid in sorted(full.items()):
        now, then = container_cpu_seconds(cid), before[name]
        if now is None or then is None:
            print(f"  {name.removeprefix(stack.project + '-'):<28}   (no cgroup found)")
            continue
        share = (now - then) / elapsed * 100
        total += share
        print(f"  {name.removeprefix(stack.project + '-'):<28} {share:6.1f} %")
    print(f"  {'containers':<28} {total:6.1f} %")
    print(f"  {'whole machine':<28} {machine:6.1f} %   (the rest: Docker running the healthchecks)")


def report(label: str, runs: list[dict[str, Any]]) -> None:
    states = {run["state_type"] for run in runs}
    to_running, to_done = zip(*(latencies(run) for run in runs), strict=True)
    print(f"{label}: {len(runs)} runs, states {sorted(states)}")
    print(f"  trigger -> Running    {quantiles(list(to_running))}")
    print(f"  trigger -> Completed  {quantiles(list(to_done))}")


def build(stack: Stack) -> None:
    """`docker compose build` as `up` runs it, with BuildKit's plain log to count what it did
    (before `up` created .env: the example's values interpolate the file)."""
    started = time.monotonic()
    result = subprocess.run(
        ["docker", "compose", "--env-file", ".env.example", "--progress", "plain", "build"],
        cwd=stack.root, env={**stack.env, "PLATFORM_DIR": str(stack.root)},
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    seconds = time.monotonic() - started
    log = result.stdout + result.stderr
    steps = dict(re.findall(r"^(#\d+) \[(\S+) internal\] load build context$", log, re.MULTILINE))
    sizes = dict(re.findall(r"^(#\d+) transferring context: ([\d.]+\s*\w+)", log, re.MULTILINE))
    contexts = [(service, sizes.get(step, "?")) for step, service in steps.items()]
    print(f"build (images present in the layer cache or not): {seconds:.1f} s, {len(contexts)} image builds")
    for service, size in contexts:
        print(f"  build context sent by {service}: {size}")


def timed_up(stack: Stack, label: str) -> tuple[float, float]:
    """`./scripts/up` timed until the UI answers and until it returns, with the start order."""
    ui = UrlWatch(f"http://127.0.0.1:{stack.port}/")
    ready = UrlWatch(f"{stack.api_url}/ready")
    started = time.monotonic()
    with polling(Timeline(stack.project)) as timeline, polling(ui), polling(ready):
        stack.run("./scripts/up")
        returned = time.monotonic() - started
        deadline = time.monotonic() + 30
        while (ui.first_ok is None or ready.first_ok is None) and time.monotonic() < deadline:
            time.sleep(0.2)
    answered = max(ui.first_ok or float("nan"), ready.first_ok or float("nan")) - started
    print(
        f"{label}: UI answers after {answered:.1f} s, `./scripts/up` returns after {returned:.1f} s "
        f"({load()})"
    )
    steps = []
    for service, state in MILESTONES:
        at = timeline.at(service, state)
        steps.append(f"{service} {state} {at - started:.1f}" if at else f"{service} {state} -")
    print("  " + ", ".join(steps))
    return answered, returned


def fresh_copy(root: Path, ref: str | None) -> None:
    """This checkout as a clone would hold it, or the tree of commit ``ref``."""
    if ref is None:
        copy_checkout(root)
        return
    root.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)


def side_by_side(ref: str, repeats: int) -> None:
    """First start and a second `up` of ``ref`` and of this checkout, alternated, medians."""
    figures: dict[str, list[tuple[float, float, float, float]]] = {ref: [], "this checkout": []}
    for _ in range(repeats):
        for label, source in ((ref, ref), ("this checkout", None)):
            with tempfile.TemporaryDirectory(prefix="pp-bench-") as tmp:
                root = Path(tmp) / "platform"
                fresh_copy(root, source)
                stack = Stack(root)
                try:
                    build(stack)
                    first = timed_up(stack, f"{label}: first start")
                    second = timed_up(stack, f"{label}: second `up`")
                    figures[label].append((*first, *second))
                finally:
                    remove_flow_runs(stack.project)
                    stack.down()
    print(f"side by side, medians of {repeats} ({load()} at the end):")
    print(f"  {'':<16} {'first: UI':>10} {'first: up':>10} {'second: up':>11}")
    for label, rows in figures.items():
        ui, up, _, again = (statistics.median(column) for column in zip(*rows, strict=True))
        print(f"  {label[:16]:<16} {ui:>9.1f}s {up:>9.1f}s {again:>10.1f}s")


def migrations(stack: Stack) -> None:
    """Prefect's migrations on an empty database, on a migrated one, and the interpreter alone."""
    password = env_value(stack.root / ".env", "POSTGRES_PASSWORD")
    stack.compose("exec", "-T", "postgres", "psql", "-qU", "prefect", "-c", "CREATE DATABASE bench_empty")
    url = f"postgresql+asyncpg://prefect:{password}@postgres:5432/bench_empty"

    def migrate(*env: str) -> float:
        started = time.monotonic()
        stack.compose("run", "--rm", "--no-deps", "-T", *env, "prefect-migrate")
        return time.monotonic() - started

    empty = migrate("-e", f"PREFECT_API_DATABASE_CONNECTION_URL={url}")
    again = migrate()
    started = time.monotonic()
    stack.compose("run", "--rm", "--no-deps", "-T", "prefect-migrate", "prefect", "version")
    baseline = time.monotonic() - started
    print(
        f"migrations (docker compose run, container start included): empty database {empty:.1f} s, "
        f"already migrated {again:.1f} s, `prefect version` alone {baseline:.1f} s"
    )


def image_sizes(stack: Stack) -> None:
    for service in ("prefect-server", "prefect-deploy"):
        image = stack.image(service)
        size = int(docker("image", "inspect", "--format", "{{.Size}}", image))
        print(f"image {image}: {size / 1e6:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="sequential trivial runs (0: none)")
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument(
        "--against", metavar="REF", help="also time first start and second `up` of commit REF, alternated"
    )
    parser.add_argument("--repeats", type=int, default=2, help="pairs of starts with --against")
    args = parser.parse_args()
    print(f"platform benchmark ({load()})")
    if args.against:
        side_by_side(args.against, args.repeats)
    with tempfile.TemporaryDirectory(prefix="pp-bench-") as tmp:
        root = Path(tmp)
        copy_checkout(root)
        stack = Stack(root)
        try:
            build(stack)
            timed_up(stack, "first start (images built, no volumes)")
            timed_up(stack, "second `up` (nothing changed)")
            migrations(stack)
            image_sizes(stack)
            time.sleep(args.idle_seconds)
            rows = memory(stack)
            print(f"idle memory after {args.idle_seconds} s:")
            for name, mib in rows:
                print(f"  {name:<28} {mib:7.1f} MiB")
            print(f"  {'total':<28} {sum(m for _, m in rows):7.1f} MiB")
            idle_cpu(stack, args.idle_seconds)
            if args.runs:
                with stack.client() as http:
                    api = PrefectApi(http)
                    api.wait(api.trigger(*DEPLOYMENT, TRIVIAL))  # warm-up: first run pays the page cache
                    runs = [api.wait(api.trigger(*DEPLOYMENT, TRIVIAL)) for _ in range(args.runs)]
                    report(f"sequential platform-check ({load()})", runs)
        finally:
            remove_flow_runs(stack.project)
            stack.down()


if __name__ == "__main__":
    main()
