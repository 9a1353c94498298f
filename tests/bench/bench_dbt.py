"""dbt under Prefect against bare dbt, side by side in one run: the shop project and a generated one.

    uv run python -m tests.bench.bench_dbt                     # shop + 200 generated models, 3 runs each
    uv run python -m tests.bench.bench_dbt --models 400 --repeats 5 --baseline
    ./scripts/bench dbt ...                                     # the same

Not a pytest module (no test_ prefix): it prints figures and asserts nothing. Each measured run is a
fresh process on the same DuckDB setup, threads and partial-parse state, alternating the two so
load on a shared host hits both alike (one warm-up run of each first, which also parses fully):
  * bare dbt: `dbt build` (dbtRunner, which the `dbt` command calls) with a profiles.yml holding the
    platform profile's output;
  * ours: `python -m flows.dbt_build <project>` against a Prefect server started for the benchmark,
    as a flow-run container runs it: the dbt flow (parameter checks, warehouse lock, workspace, one
    dbt invocation, every node a task run with its asset events and log lines, the docs page, an
    artifact), until the process has exited as the flow-run engine exits (services/flow_runner/
    engine.py's leave_now: queued events and logs sent, no interpreter teardown);
  * with --baseline, also prefect-dbt's PrefectDbtRunner in a flow (what the platform used before).
Imports are byte-compiled (PYTHONPYCACHEPREFIX), as in the images. It prints process wall seconds,
the dbt step alone (bare: imports, parse, build; ours: the same inside the flow, without the docs
page), CPU seconds, the split of ours' process, and the task runs and asset events the server
recorded for our last run, so the speed is not bought by dropping nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.bench.bench_dbt_projects import generate_project, load_shop_raw_tables
from tests.bench.measure import machine_busy_seconds
from tests.support import REPO
from tests.support.postgres_cluster import throwaway_postgres
from tests.support.prefect_server import prefect_server

# `dbt build` as its command line runs it (dbtRunner is what the `dbt` command calls), timing the
# same span as ours' dbt step: dbt's imports, parse and build.
BARE = """
import json, sys, time
started = time.perf_counter()
from dbt.cli.main import dbtRunner
result = dbtRunner().invoke({args!r})
print(json.dumps({{"dbt_s": time.perf_counter() - started}}))
sys.exit(0 if result.success else 1)
"""

OURS = """
import json, time
started = time.perf_counter()
from flows.dbt_build import dbt_build
imported = time.perf_counter()
state = dbt_build(project={project!r}, return_state=True)
summary = state.result()
print(json.dumps({{"import_s": imported - started, "call_s": time.perf_counter() - imported,
                  "dbt_s": summary["seconds"], "parse_s": summary["parse_seconds"],
                  "run_s": summary["run_seconds"], "docs_s": summary["docs_seconds"],
                  "flow_run_id": str(state.state_details.flow_run_id),
                  "statuses": summary["node_statuses"]}}))
from services.flow_runner.engine import leave_now
leave_now()  # the end of every flow-run container's process: queued logs and events sent, then exit
"""

BASELINE = """
import json, time
from pathlib import Path
started = time.perf_counter()
from prefect import flow

@flow(name="prefect-dbt-baseline")
def baseline():
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings
    began = time.perf_counter()
    settings = PrefectDbtSettings(project_dir=Path({project_dir!r}), profiles_dir=Path({profiles_dir!r}),
                                  target_path=Path({target!r}))
    PrefectDbtRunner(settings=settings, raise_on_failure=True).invoke(
        ["--no-use-colors", "build", "--log-path", {logs!r}])
    return time.perf_counter() - began

dbt_s = baseline()
print(json.dumps({{"dbt_s": dbt_s, "call_s": time.perf_counter() - started}}))
"""


@dataclass
class Measured:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    detail: list[dict[str, Any]] = field(default_factory=list)

    def add(self, wall: float, cpu: float, detail: dict[str, Any] | None = None) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.detail.append(detail or {})

    def median(self, key: str) -> float:
        return statistics.median(d[key] for d in self.detail)


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, str]:
    """Runs a process in ``cwd``; returns its wall seconds, its CPU seconds (user+system, all its
    threads), the CPU seconds the rest of the machine spent meanwhile (for ours: mostly the Prefect
    server and its database recording what the run sent), and its stdout.

    ``cwd`` is the benchmark's own folder, for bare dbt and ours alike: Prefect's settings read a
    `.env` in the working directory (3 times per settings model: 2.4 s of every start with the
    stack's 273-line one on 2 cores), and a flow-run container's working directory has none."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        machine = machine_busy_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        machine = machine_busy_seconds() - machine
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{stderr[-4000:]}{stdout[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, max(machine - cpu, 0.0), stdout


@dataclass
class Project:
    label: str
    name: str
    source: Path
    projects_dir: Path
    nodes: int = 0


class Bench:
    def __init__(self, work: Path, api_url: str, threads: int) -> None:
        self.work = work
        self.api_url = api_url
        self.threads = threads
        # Byte-compiled imports, as in the flow-run image (built with --compile-bytecode): the
        # warm-up runs write the cache here, even where PYTHONDONTWRITEBYTECODE is set.
        self.base_env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "PYTHONPYCACHEPREFIX": str(work / "pycache"),
            "PYTHONPATH": str(REPO),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def _database(self, project: Project, who: str) -> Path:
        path = self.work / f"{who}-{project.name}.duckdb"
        if project.name == "shop" and not path.exists():
            load_shop_raw_tables(path)
        return path

    def bare_profiles(self, project: Project) -> Path:
        """profiles.yml for bare dbt: the platform profile's DuckDB output, same threads and schema."""
        from flows.dbt_project import DbtWorkspace, platform_profile

        folder = self.work / f"bare-profiles-{project.name}"
        folder.mkdir(exist_ok=True)
        profile = DbtWorkspace(source=project.source, root=folder).profile_name
        content = platform_profile(profile, "duckdb", project.name, self.threads)
        (folder / "profiles.yml").write_text(yaml.safe_dump(content))
        return folder

    def bare(self, project: Project) -> tuple[float, float, float, str]:
        profiles = self.bare_profiles(project)
        env = {**self.base_env, "DUCKDB_PATH": str(self._database(project, "bare"))}
        run_dir = self.work / f"bare-run-{project.name}"
        args = ["build", "--project-dir", str(project.source), "--profiles-dir", str(profiles)]
        args += ["--target-path", str(run_dir / "target"), "--log-path", str(run_dir / "logs")]
        return _run([sys.executable, "-c", BARE.format(args=args)], env, self.work)

    def ours(self, project: Project) -> tuple[float, float, float, str]:
        env = {
            **self.base_env,
            "PREFECT_API_URL": self.api_url,
            "WAREHOUSE": "duckdb",
            "DUCKDB_PATH": str(self._database(project, "ours")),
            "DATA_DIR": str(self.work / "data"),
            "DBT_PROJECTS_DIR": str(project.projects_dir),
            "DBT_THREADS": str(self.threads),
            "PREFECT_LOCAL_STORAGE_PATH": str(self.work / "results"),
        }
        return _run([sys.executable, "-c", OURS.format(project=project.name)], env, self.work)

    def baseline(self, project: Project) -> tuple[float, float, float, str]:
        env = {
            **self.base_env,
            "PREFECT_API_URL": self.api_url,
            "DUCKDB_PATH": str(self._database(project, "baseline")),
        }
        run_dir = self.work / f"baseline-run-{project.name}"
        code = BASELINE.format(
            project_dir=str(project.source),
            profiles_dir=str(self.bare_profiles(project)),
            target=str(run_dir / "target"),
            logs=str(run_dir / "logs"),
        )
        return _run([sys.executable, "-c", code], env, self.work)


def _json_line(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def recorded(api_url: str, flow_run_id: str, expected_nodes: int) -> tuple[int, int]:
    """Task runs of the flow run (minus the wrapping `dbt` task) and asset materializations the
    server recorded; waits up to 60 s for its event pipeline to catch up."""
    os.environ["PREFECT_API_URL"] = api_url
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200, offset=0
            )
            total = len(runs)
            offset = 200
            while len(runs) == 200:
                runs = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    limit=200,
                    offset=offset,
                )
                total += len(runs)
                offset += 200
            nodes = total - 1  # the `dbt` task that holds them
            if nodes >= expected_nodes or time.monotonic() > deadline:
                break
            time.sleep(2)
        response = client.request(
            "POST",
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["prefect.asset.materialization.succeeded"]},
                    "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                },
                "limit": 1,
            },
        )
    return nodes, int(response.json().get("total", 0))


def bench_project(bench: Bench, project: Project, repeats: int, baseline: bool) -> dict[str, Any]:
    print(f"[{project.label}] warm-up (first parse, tables created)...", flush=True)
    bench.bare(project)
    warm = _json_line(bench.ours(project)[3])
    project.nodes = sum(warm["statuses"].values())
    bare, ours, base = Measured(), Measured(), Measured()
    for i in range(repeats):
        print(f"[{project.label}] run {i + 1}/{repeats}: bare dbt, ours", flush=True)
        for measured, run in [(bare, bench.bare), (ours, bench.ours)] + (
            [(base, bench.baseline)] if baseline else []
        ):
            wall, cpu, others, out = run(project)
            measured.add(wall, cpu, {**_json_line(out), "others_cpu": others})
    task_runs, assets = recorded(bench.api_url, ours.detail[-1]["flow_run_id"], project.nodes)
    return {"project": project, "bare": bare, "ours": ours, "baseline": base, "task_runs": task_runs,
            "assets": assets}  # fmt: skip


def _print(results: list[dict[str, Any]], threads: int, server_database: str) -> None:
    med = statistics.median
    print()
    header = (
        f"{'project':<24} {'nodes':>5} | {'process s: bare':>15} {'ours':>6} {'ratio':>5} | "
        f"{'dbt step s: bare':>16} {'ours':>6} {'ratio':>5} | {'CPU s: bare':>11} {'ours':>6} | "
        f"{'others CPU s: bare':>18} {'ours':>6} | "
        f"{'prefect-dbt s':>13} {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        bare, ours, base = r["bare"], r["ours"], r["baseline"]
        bare_s, ours_s = med(bare.wall), med(ours.wall)
        bare_step = bare.median("dbt_s")
        ours_step = med(d["dbt_s"] - d["docs_s"] for d in ours.detail)
        line = (
            f"{r['project'].label:<24} {r['project'].nodes:>5} | {bare_s:>15.2f} {ours_s:>6.2f} "
            f"{ours_s / bare_s:>5.2f} | {bare_step:>16.2f} {ours_step:>6.2f} {ours_step / bare_step:>5.2f} | "
            f"{med(bare.cpu):>11.2f} {med(ours.cpu):>6.2f} | "
            f"{bare.median('others_cpu'):>18.2f} {ours.median('others_cpu'):>6.2f} |"
        )
        if base.wall:
            line += f" {med(base.wall):>13.2f} {med(base.wall) / bare_s:>5.2f}"
        print(line)
    runs = len(results[0]["bare"].wall)
    print(f"""
Medians of {runs} runs each, {threads} dbt threads, DuckDB, a fresh process per run; the
benchmark's Prefect server on {server_database} (the stack's runs on Postgres).
process: wall seconds of the whole process. bare: `dbt build` (dbtRunner, as the dbt command runs
it); ours: `python -m flows.dbt_build <project>`, the dbt flow, until its process exited (Prefect's
imports, the flow run, the docs page it writes after a build, the engine's exit); prefect-dbt:
PrefectDbtRunner's build in a flow (the platform before). dbt step: bare, dbt's imports, parse and
build; ours, the same inside the flow (warehouse lock, workspace, parse, build with every node's
task run, asset events and logs) without the docs page (flows/dbt_outputs.py). CPU: user + system
seconds of the process, all threads. others CPU: what the rest of the machine spent meanwhile
(for ours, mostly the server and its database recording the run's events and logs; on 2 cores it
competes with dbt's threads). Ours' process, split (medians):""")
    for r in results:
        ours = r["ours"]
        start = med(d["import_s"] for d in ours.detail)
        call = med(d["call_s"] for d in ours.detail)
        print(
            f"  {r['project'].label}: start {start:.2f} s (imports, flow run), flow {call:.2f} s (dbt step "
            f"{ours.median('dbt_s'):.2f} s: parse {ours.median('parse_s'):.2f} s, build "
            f"{ours.median('run_s'):.2f} s, docs {ours.median('docs_s'):.2f} s), exit "
            f"{med(ours.wall) - start - call:.2f} s; the server recorded {r['task_runs']}/"
            f"{r['project'].nodes} node task runs, {r['assets']} asset materializations"
        )
        rounded = {name: [round(w, 1) for w in r[name].wall] for name in ("bare", "ours")}
        print(f"    runs (s): bare {rounded['bare']}, ours {rounded['ours']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=200, help="models of the generated project")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--baseline", action="store_true", help="also prefect-dbt's PrefectDbtRunner")
    parser.add_argument("--only", choices=("shop", "generated"), help="one project only")
    parser.add_argument(
        "--server-database",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="the benchmark server's database: Postgres as in the stack (default), or Prefect's SQLite",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dbt-") as tmp:
        work = Path(tmp)
        generated_root = work / "projects"
        generate_project(generated_root / "generated", args.models)
        projects = [
            Project("shop", "shop", REPO / "flows" / "dbt" / "shop", REPO / "flows" / "dbt"),
            Project(
                f"generated ({args.models} models)", "generated", generated_root / "generated", generated_root
            ),
        ]
        if args.only:
            projects = [p for p in projects if p.name == args.only]
        print(f"starting a Prefect server on {args.server_database} for the benchmark...", flush=True)
        with contextlib.ExitStack() as stack:
            database_url = None
            if args.server_database == "postgres":
                database_url = stack.enter_context(throwaway_postgres(fsync=True))
            api_url = stack.enter_context(prefect_server(work / "prefect-home", database_url=database_url))
            bench = Bench(work, api_url, args.threads)
            results = [bench_project(bench, p, args.repeats, args.baseline) for p in projects]
    _print(results, args.threads, args.server_database)


if __name__ == "__main__":
    main()
