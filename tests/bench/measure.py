"""What the stack benchmarks measure with, from the host: state timelines of a compose project's
containers, the moment a URL first answers, the summed memory of a project's containers (services
and flow runs) sampled from their cgroups, CPU seconds of a container and of the whole machine, and
quantiles. Standard library and the docker CLI only.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
# The label prefect-docker puts on every flow-run container (prefect.io/flow-run-id, reversed).
FLOW_RUN_LABEL = "io.prefect.flow-run-id"


def parse_time(value: str) -> float:
    """Epoch seconds of an ISO timestamp from Prefect's API or `docker inspect` (nanoseconds cut)."""
    value = value.replace("Z", "+00:00")
    if "." in value:  # Docker's nanoseconds: Python parses at most microseconds
        head, rest = value.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        value = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(value).timestamp()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def quantiles(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):6.2f} s  p95 {quantile(values, 0.95):6.2f} s  "
        f"max {max(values):6.2f} s"
    )


def load() -> str:
    """The host's load averages (1, 5, 15 min) and cores: the noise every figure here carries."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    cores = len(Path("/proc/cpuinfo").read_text().split("processor\t:")) - 1
    return f"load {one} {five} {fifteen} on {cores} cores"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


class Poller(threading.Thread):
    """Calls ``probe`` every ``interval`` seconds in the background until stopped."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stopping = threading.Event()

    def probe(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):  # a probe failing once (container gone) is no result
                self.probe()
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


class UrlWatch(Poller):
    """The first moment (time.monotonic) ``url`` answered 200."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        super().__init__(interval)
        self.url = url
        self.first_ok: float | None = None

    def probe(self) -> None:
        if self.first_ok is None:
            with urllib.request.urlopen(self.url, timeout=2) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    self.first_ok = time.monotonic()
                    self.stopping.set()


class Timeline(Poller):
    """When each container of a compose project last changed into each state: created, running,
    healthy, exited (docker ps every ``interval`` seconds; the resolution of every figure). States
    it already had when the watch began are not changes: they have no time."""

    def __init__(self, project: str, interval: float = 0.5) -> None:
        super().__init__(interval)
        self.project = project
        self.seen: dict[tuple[str, str], float] = {}
        self.state: dict[str, str] = {}
        self.first_probe = True

    def probe(self) -> None:
        now = time.monotonic()
        out = docker(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
            "--format", '{{.Label "com.docker.compose.service"}}\t{{.Status}}',
        )  # fmt: skip
        for line in out.splitlines():
            service, status = line.split("\t", 1)
            state = (
                "healthy" if "(healthy)" in status
                else "exited" if status.startswith("Exited")
                else "running" if status.startswith("Up")
                else "created"
            )  # fmt: skip
            if self.state.get(service) != state and not self.first_probe:
                self.seen[(service, state)] = now
            self.state[service] = state
        self.first_probe = False

    def at(self, service: str, state: str) -> float | None:
        return self.seen.get((service, state))


def _cgroup_candidates(container_id: str, *hierarchies: str) -> Iterator[Path]:
    """Where a container's cgroup may be in each hierarchy ("" is v2's root, "unified" hybrid's v2
    tree, else a v1 controller), with the cgroupfs or the systemd driver."""
    for hierarchy in hierarchies:
        for leaf in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
            yield Path("/sys/fs/cgroup", hierarchy, leaf)


def cgroup_dir(container_id: str) -> Path | None:
    """The memory cgroup of a container: cgroup v1 or v2, cgroupfs or systemd driver."""
    return next((p for p in _cgroup_candidates(container_id, "memory", "") if p.is_dir()), None)


def container_cpu_seconds(container_id: str) -> float | None:
    """CPU seconds a container's processes have spent (its healthchecks' included), from its cgroup."""
    for path in _cgroup_candidates(container_id, "", "unified"):
        with contextlib.suppress(OSError):
            stat = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines())
            return int(stat["usage_usec"]) / 1e6
    for path in _cgroup_candidates(container_id, "cpuacct", "cpu,cpuacct"):
        with contextlib.suppress(OSError):
            return int((path / "cpuacct.usage").read_text()) / 1e9
    return None


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has spent (all cores, /proc/stat: not idle or iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user..steal, minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def cgroup_memory(path: Path) -> int:
    """Bytes in use as `docker stats` counts them: usage minus inactive file cache."""
    stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
    if (path / "memory.usage_in_bytes").exists():
        usage = int((path / "memory.usage_in_bytes").read_text())
        return usage - int(stat.get("total_inactive_file", 0))
    return int((path / "memory.current").read_text()) - int(stat.get("inactive_file", 0))


class StackMemory(Poller):
    """Summed memory of a compose project's containers and of its flow-run containers (those on the
    project's network), sampled every ``interval`` seconds: the peak of the sum is what the host
    had to hold at once. Per container, the largest sample is kept too."""

    def __init__(self, project: str, interval: float = 0.25, refresh: float = 2.0) -> None:
        super().__init__(interval)
        self.project = project
        self.refresh = refresh
        self.containers: dict[str, tuple[str, Path]] = {}  # id -> (name, cgroup)
        self.listed = 0.0
        self.peak_total = 0
        self.peak_by_name: dict[str, int] = {}
        self.samples = 0

    def list_containers(self) -> None:
        rows = docker(
            "ps", "--no-trunc", "--filter", f"label=com.docker.compose.project={self.project}",
            "--format", '{{.ID}}\t{{.Label "com.docker.compose.service"}}',
        ).splitlines()  # fmt: skip
        rows += docker(
            "ps", "--no-trunc", "--filter", f"network={self.project}", "--filter",
            f"label={FLOW_RUN_LABEL}", "--format", "{{.ID}}\tflow run {{.Names}}",
        ).splitlines()  # fmt: skip
        for row in rows:
            container_id, name = row.split("\t", 1)
            if container_id not in self.containers and (path := cgroup_dir(container_id)):
                self.containers[container_id] = (name, path)
        self.listed = time.monotonic()

    def probe(self) -> None:
        if time.monotonic() - self.listed > self.refresh:
            self.list_containers()
        total = 0
        for container_id, (name, path) in list(self.containers.items()):
            try:
                used = cgroup_memory(path)
            except OSError:  # the container is gone
                del self.containers[container_id]
                continue
            total += used
            key = "flow runs (largest one)" if name.startswith("flow run ") else name
            self.peak_by_name[key] = max(self.peak_by_name.get(key, 0), used)
        self.peak_total = max(self.peak_total, total)
        self.samples += 1


@contextlib.contextmanager
def polling(poller: Poller | FlowRunEvents) -> Iterator[Any]:
    poller.start()
    try:
        yield poller
    finally:
        poller.stop()


def container_summary(project: str) -> dict[str, dict[str, Any]]:
    """Service -> OOM-killed, restart count and exit code of the project's containers (all states)."""
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    if not ids:
        return {}
    out = {}
    for item in json.loads(docker("inspect", *ids)):
        service = item["Config"]["Labels"].get("com.docker.compose.service", item["Name"])
        state = item["State"]
        out[service] = {
            "oom_killed": state.get("OOMKilled", False),
            "restarts": item.get("RestartCount", 0),
            "exit_code": state.get("ExitCode"),
            "status": state.get("Status"),
        }
    return out


def remove_flow_runs(project: str) -> None:
    """Flow-run containers still on the project's network (a benchmark stopped mid-run): they would
    keep its network and data volume from being removed with the stack."""
    ids = docker("ps", "-aq", "--filter", f"network={project}", "--filter", f"label={FLOW_RUN_LABEL}").split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


class FlowRunEvents(threading.Thread):
    """Docker's events of flow-run containers, recorded live: the engine keeps only its last few
    hundred events for `docker events --since`, which a busy shared engine overwrites in seconds."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", f"label={FLOW_RUN_LABEL}",
             "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.events: list[tuple[str, str, float]] = []  # (flow-run id, action, epoch seconds)

    def run(self) -> None:
        for line in self.process.stdout or ():
            with contextlib.suppress(ValueError, KeyError):
                event = json.loads(line)
                run_id = event["Actor"]["Attributes"][FLOW_RUN_LABEL]
                self.events.append((run_id, event["Action"], event["timeNano"] / 1e9))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.join(timeout=10)

    def of(self, run_id: str) -> dict[str, float]:
        """Action -> first time, for one run's container(s)."""
        out: dict[str, float] = {}
        for run, action, at in list(self.events):
            if run == run_id:
                out.setdefault(action, at)
        return out

    def count(self, run_id: str, action: str) -> int:
        return sum(1 for run, act, _ in list(self.events) if run == run_id and act == action)


def task_spans(
    api: Any, run_id: str, names: tuple[str, ...] = ("ingest", "transform")
) -> dict[str, tuple[float, float]]:
    """(start, end) in epoch seconds of a flow run's named task runs. The server records task runs
    from their events in batches flushed every second, so the last task's end may follow the run's
    Completed by that: waits up to 15 s for every named one."""
    deadline = time.monotonic() + 15
    while True:
        tasks = api.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200})
        spans = {
            name: (parse_time(task["start_time"]), parse_time(task["end_time"]))
            for task in tasks
            for name in names
            if task["name"].startswith(f"{name}-") and task["start_time"] and task["end_time"]
        }
        if len(spans) == len(names) or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)
