"""Two maximal flow runs at once with the whole stack in a 2 GiB memory budget: is anything killed?

    sudo .venv/bin/python -m tests.bench.bench_budget          # or ./scripts/bench budget (as root)

What it does, on a fresh copy of the checkout run as its own compose project:
  * the budget: a memory cgroup of its own (cgroup v1, Docker's cgroupfs driver, as on the test
    host) limited to `--budget-mib` (2048). Every service joins it through `cgroup_parent` (a
    docker-compose.override.yml in the copy); every flow-run container of the project is moved
    into a child cgroup of it with the container's own limit as soon as it appears (its processes
    and their charged memory: memory.move_charge_at_immigrate), because the worker starts those
    containers under Docker's default parent (what a run charged before its move, within a fraction
    of a second of its start, stays outside: printed). So the kernel enforces the sum, and when the
    sum is reached its OOM killer chooses among the stack's processes, by their oom_score_adj.
  * a "maximal" run: a benchmark-only deployment (written into the copy's flows/, never the
    repository's) whose flow fills its container to `--fill` (0.9) of its memory limit, measured
    by its own resident set, holds it for `--hold` seconds, and returns.
  * scenario "sized": `./scripts/up` sizes the flow runs as on a t3.small (the engine's MemTotal is
    reported as 2,004,000,000 bytes and 2 cores by a shim in front of `docker info`; everything else
    is the real engine): WORKER_CONCURRENCY=2 x FLOW_RUN_MEMORY_LIMIT=512m. Two maximal runs at once.
  * scenario "today's defaults": WORKER_CONCURRENCY=2 x FLOW_RUN_MEMORY_LIMIT=1g (the defaults
    before the sizing; the real host's memory, so `up` accepts them), the same two runs at once.
For each: final states of the runs, the peak of the budget cgroup (memory.max_usage_in_bytes), the
kernel's OOM kills in it (memory.oom_control), and every service's restarts and OOM flag.
Prints figures, asserts nothing. Needs root (it writes /sys/fs/cgroup) and cgroup v1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

from tests.bench.measure import (
    FLOW_RUN_LABEL,
    MIB,
    Poller,
    container_summary,
    docker,
    load,
    polling,
    remove_flow_runs,
)
from tests.support.stack import PrefectApi, Stack, copy_checkout

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
T3_SMALL_MEMTOTAL = 2_004_000_000
HOG = '''"""Benchmark fixture (tests/bench/bench_budget.py): fills this container to a share of its limit."""

import time

from prefect import flow


def rss_mib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


@flow(name="memory-hog")
def memory_hog(target_mib: int, hold_seconds: float = 20) -> dict:
    chunks = []
    while rss_mib() < target_mib:
        chunk = bytearray(8 << 20)
        chunk[::4096] = b"\\x01" * len(range(0, len(chunk), 4096))  # every page really in memory
        chunks.append(chunk)
    time.sleep(hold_seconds)
    return {"rss_mib": rss_mib()}
'''
HOG_DEPLOYMENT = """
  - name: hog
    description: Benchmark fixture (tests/bench/bench_budget.py).
    entrypoint: bench_memory_hog.py:memory_hog
    parameters: {target_mib: 100}
    work_pool: *stack_pool
"""
DOCKER_SHIM = """#!/bin/sh
# `docker info` reports a t3.small's memory and cores; every other call goes to the real docker.
if [ "$1" = info ] && [ "$2" = --format ]; then echo "%d 2"; exit 0; fi
exec %s "$@"
"""


def write(path: Path, value: str) -> None:
    path.write_text(value)


def budget_cgroup(name: str, limit: int) -> Path:
    group = MEMORY_ROOT / name
    group.mkdir()
    write(group / "memory.limit_in_bytes", str(limit))
    return group


def remove_cgroups(name: str) -> None:
    """The budget's cgroups in every hierarchy (Docker made them for cgroup_parent), deepest first."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if top.is_dir():
            for child in sorted(top.glob("*/"), reverse=True):
                with contextlib.suppress(OSError):
                    child.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


class FlowRunMover(Poller):
    """Moves each new flow-run container of the project into the budget, keeping its own limit."""

    def __init__(self, project: str, budget: Path) -> None:
        super().__init__(0.1)
        self.project = project
        self.budget = budget
        self.moved: dict[str, Path] = {}
        self.outside: dict[str, int] = {}  # bytes charged to the container's own cgroup, not moved
        self.kills: dict[str, int] = {}  # OOM kills in each run's cgroup

    def probe(self) -> None:
        ids = docker(
            "ps", "-q", "--no-trunc", "--filter", f"label={FLOW_RUN_LABEL}",
            "--filter", f"network={self.project}",
        ).split()  # fmt: skip
        for container_id in ids:
            source = MEMORY_ROOT / "docker" / container_id
            target = self.moved.get(container_id)
            if target is None:
                target = self.budget / f"run-{container_id[:12]}"
                target.mkdir(exist_ok=True)
                write(target / "memory.limit_in_bytes", (source / "memory.limit_in_bytes").read_text())
                # Move what is charged too; kernels that dropped charge moving (6.x) refuse it, and
                # what the container charged before the move stays outside (counted below).
                with contextlib.suppress(OSError):
                    write(target / "memory.move_charge_at_immigrate", "3")
                self.moved[container_id] = target
            # Again on every probe: a process the container forks later lands in the old cgroup.
            for pid in (source / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    write(target / "cgroup.procs", pid)
            with contextlib.suppress(OSError):
                left = int((source / "memory.usage_in_bytes").read_text())
                self.outside[container_id] = max(self.outside.get(container_id, 0), left)
        for container_id, target in list(self.moved.items()):
            with contextlib.suppress(OSError):
                self.kills[container_id] = oom_kills(target)  # kept: the cgroup goes with the run
                if container_id not in ids:
                    target.rmdir()


def oom_kills(group: Path) -> int:
    fields = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
    return int(fields.get("oom_kill", 0))


def service_kills(group: Path) -> int:
    """OOM kills the kernel made in the budget itself and in the services' cgroups under it."""
    return oom_kills(group) + sum(
        oom_kills(child) for child in group.glob("*/") if not child.name.startswith("run-")
    )


@contextlib.contextmanager
def stack_in_budget(root: Path, budget_mib: int) -> Iterator[tuple[Stack, Path]]:
    stack = Stack(root)
    name = f"ppbudget-{stack.project}"
    services = json.loads(
        stack.run(
            "env",
            f"PLATFORM_DIR={root}",
            "docker",
            "compose",
            "--env-file",
            ".env.example",
            "config",
            "--format",
            "json",
        ).stdout
    )["services"]
    (root / "docker-compose.override.yml").write_text(
        json.dumps({"services": {service: {"cgroup_parent": f"/{name}"} for service in services}})
    )
    group = budget_cgroup(name, budget_mib * MIB)
    try:
        yield stack, group
    finally:
        remove_flow_runs(stack.project)
        stack.down()
        remove_cgroups(name)


def two_maximal_runs(stack: Stack, group: Path, label: str, fill: float, hold: float) -> None:
    env = (stack.root / ".env").read_text()
    settings = dict(
        line.split("=", 1) for line in env.splitlines() if "=" in line and not line.startswith("#")
    )
    limit = settings["FLOW_RUN_MEMORY_LIMIT"]
    limit_mib = int(limit[:-1]) * (1024 if limit.endswith("g") else 1)
    target = int(limit_mib * fill)
    write(group / "memory.max_usage_in_bytes", "0")  # the peak from here on
    kills_before = service_kills(group)
    before = container_summary(stack.project)
    with stack.client() as http, polling(FlowRunMover(stack.project, group)) as mover:
        api = PrefectApi(http)
        params = {"target_mib": target, "hold_seconds": hold}
        ids = [api.trigger("memory-hog", "hog", params) for _ in range(2)]
        runs = [api.wait(run_id, timeout=600) for run_id in ids]
    after = container_summary(stack.project)
    peak = int((group / "memory.max_usage_in_bytes").read_text())
    print(
        f"{label}: WORKER_CONCURRENCY={settings['WORKER_CONCURRENCY']} x FLOW_RUN_MEMORY_LIMIT={limit}, "
        f"two runs filling {target} MiB each at once ({load()})"
    )
    print(f"  runs: {[run['state_name'] for run in runs]}")
    for run in runs:
        if run["state_type"] != "COMPLETED":
            print(f"    {run['name']}: {(run['state'] or {}).get('message')}")
    print(
        f"  budget peak: {peak / MIB:.0f} of {int((group / 'memory.limit_in_bytes').read_text()) // MIB} MiB"
    )
    print(
        f"  OOM kills: {sum(mover.kills.values())} in the flow runs' cgroups, "
        f"{service_kills(group) - kills_before} in the budget's own and the services'"
    )
    outside = sum(mover.outside.values())
    print(f"  charged before a run's move into the budget (outside it): {outside / MIB:.0f} MiB in all")
    hurt = {
        service: state
        for service, state in after.items()
        if state["oom_killed"] or state["restarts"] != before.get(service, {}).get("restarts", 0)
        or (state["status"] != "running" and state["exit_code"] not in (0, None))
    }  # fmt: skip
    print(f"  services killed or restarted: {hurt or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget-mib", type=int, default=2048)
    parser.add_argument("--fill", type=float, default=0.9, help="share of its limit each run fills")
    parser.add_argument("--hold", type=float, default=20, help="seconds each run holds its memory")
    args = parser.parse_args()
    if os.geteuid() != 0 or not (MEMORY_ROOT / "memory.limit_in_bytes").exists():
        raise SystemExit("bench budget: needs root and cgroup v1 (it creates a memory cgroup for the stack)")
    with TemporaryDirectory(prefix="pp-bench-budget-") as tmp:
        root = Path(tmp) / "platform"
        copy_checkout(root)
        (root / "flows" / "bench_memory_hog.py").write_text(HOG)
        with (root / "flows" / "prefect.yaml").open("a") as deployments:
            deployments.write(HOG_DEPLOYMENT)
        shim = Path(tmp) / "bin" / "docker"
        shim.parent.mkdir()
        shim.write_text(DOCKER_SHIM % (T3_SMALL_MEMTOTAL, docker_path()))
        shim.chmod(0o755)
        with stack_in_budget(root, args.budget_mib) as (stack, group):
            print(f"budget: cgroup {group} limited to {args.budget_mib} MiB ({load()})")
            # Sized as on a t3.small: the shim answers `docker info` for `up`.
            stack.run("env", f"PATH={shim.parent}:{os.environ['PATH']}", "./scripts/up")
            two_maximal_runs(stack, group, "sized for a t3.small", args.fill, args.hold)
            # Today's defaults: the real host's memory, so `up` accepts them.
            for pair in ("WORKER_CONCURRENCY=2", "FLOW_RUN_MEMORY_LIMIT=1g"):
                stack.run(
                    "python3", "scripts/lib/envfile.py", "ensure", "--env", ".env",
                    "--example", ".env.example", "--force", pair,
                )  # fmt: skip
            stack.run("./scripts/up", "--no-build")
            two_maximal_runs(stack, group, "today's defaults", args.fill, args.hold)


def docker_path() -> str:
    for folder in os.environ["PATH"].split(os.pathsep):
        if (Path(folder) / "docker").is_file():
            return str(Path(folder) / "docker")
    raise SystemExit("bench budget: docker is not on PATH")


if __name__ == "__main__":
    main()
