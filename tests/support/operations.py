"""The day-2 drill's stack and probes (issue 13), shared by the restore and the upgrade modules.

Each module gets its own stack made from a fresh copy of the checkout turned into a git repository
(commit "release A", the running release), so the upgrade has commits to move between and the
backup's manifest a commit to name.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.report import announce
from tests.support.stack import PrefectApi, Stack, copy_checkout, running

GIT = ["git", "-c", "user.name=drill", "-c", "user.email=drill@example.test", "-c", "init.defaultBranch=main"]


def git(stack: Stack, *args: str) -> str:
    return stack.run(*GIT, *args).stdout.strip()


@contextlib.contextmanager
def release_stack(
    root: Path, request: pytest.FixtureRequest, title: str, figures: dict[str, float]
) -> Iterator[Stack]:
    """A stack running commit "release A" of a git copy of the checkout; ``figures`` announced after."""
    copy_checkout(root)
    stack = Stack(root)
    git(stack, "init", "-q")
    git(stack, "add", "-A")
    git(stack, "commit", "-q", "-m", "release A")
    try:
        with running(stack, request):
            # Docker's build cache is the whole engine's (other stacks, other tests): never prune it here.
            env_file = stack.root / ".env"
            env_file.write_text(
                env_file.read_text().replace(
                    "UPGRADE_PRUNE_BUILD_CACHE=true", "UPGRADE_PRUNE_BUILD_CACHE=false"
                )
            )
            yield stack
    finally:
        # What the upgrades left: the :previous tags and this project's dangling builds.
        label = f"label=com.docker.compose.project={stack.project}"
        ids = subprocess.run(
            ["docker", "images", "-aq", "--filter", label], capture_output=True, text=True
        ).stdout
        subprocess.run(["docker", "image", "rm", "-f", *sorted(set(ids.split()))], capture_output=True)
        announce(f"{title}:\n" + "\n".join(f"  {k} = {v:.1f}" for k, v in figures.items()))


def build_history(stack: Stack, api: PrefectApi) -> None:
    """An ELT run that loads rows and a self-check: the history a backup, restore or upgrade keeps."""
    first = api.wait(api.trigger("elt", "daily"), timeout=900)
    assert first["state_type"] == "COMPLETED", first["state"]
    assert rows_loaded(api, first["id"]) > 0
    check = api.wait(api.trigger("platform-check", "self-check"))
    assert check["state_type"] == "COMPLETED", check["state"]


def command(stack: Stack, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = stack.run(*args, check=False, timeout=timeout)
    result.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return result


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


WAREHOUSE_ROWS = """
import duckdb, json
c = duckdb.connect("/data/warehouse.duckdb", read_only=True)
tables = c.execute("select schema_name, table_name from duckdb_tables() order by 1, 2").fetchall()
count = 'select count(*) from "{}"."{}"'
print(json.dumps({f"{s}.{t}": c.execute(count.format(s, t)).fetchone()[0] for s, t in tables}))
"""


def warehouse_rows(stack: Stack) -> dict[str, int]:
    """Rows of every table in the DuckDB warehouse (dlt's state tables included)."""
    out = stack.compose(
        "run", "--rm", "--no-deps", "-T", "--entrypoint", "python3", "prefect-ops", "-c", WAREHOUSE_ROWS
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def history(api: PrefectApi) -> dict[str, Any]:
    """What a restore must bring back: deployments, finished runs with their task runs, artifacts.

    Runs the scheduler created are left out: one may start or end at any time during the test.
    """
    runs = [r for r in api.post("/flow_runs/filter", {"limit": 200}) if "auto-scheduled" not in r["tags"]]
    finished = {r["id"]: r["state_type"] for r in runs if r["state_type"] in ("COMPLETED", "FAILED")}
    task_runs = {
        run_id: api.post("/task_runs/count", {"flow_runs": {"id": {"any_": [run_id]}}}) for run_id in finished
    }
    artifacts = api.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": list(finished)}}})
    return {
        "deployments": sorted((d["id"], d["name"]) for d in api.post("/deployments/filter")),
        "finished_runs": finished,
        "task_runs": task_runs,
        "artifacts": sorted(a["id"] for a in artifacts),
    }


def rows_loaded(api: PrefectApi, run_id: str) -> int:
    info = next(a for a in api.artifacts(run_id) if a["key"].startswith("load-info"))
    return sum(int(n) for n in re.findall(r"^\| \w+ \| (\d+) \| \d+ \|$", info["data"], re.MULTILINE))


def server_started_at(stack: Stack) -> str:
    container = stack.compose("ps", "-q", "prefect-server").stdout.strip()
    return subprocess.check_output(["docker", "inspect", "-f", "{{.State.StartedAt}}", container], text=True)


def psql(stack: Stack, sql: str, database: str = "prefect") -> str:
    return stack.compose(
        "exec", "-T", "postgres", "psql", "-U", "prefect", "-d", database, "-AtX", "-c", sql
    ).stdout.strip()
