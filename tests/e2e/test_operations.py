"""End to end: the day-2 drill on one stack (issue 13), driven with the commands an operator types.

A fresh copy of the checkout becomes a git repository (commit A, the running release), comes up,
runs the ELT, and then: status on a healthy stack; a backup taken while an ELT run holds the
warehouse; `docker compose down -v`; restore; the same deployments, runs, task runs, artifacts and
warehouse rows, and an ELT run that finds dlt's state (loads nothing new); refused archives
(damaged, newer schema) that touch nothing; a restore failing after the swap that puts everything
back; an upgrade to commit B that keeps the history; an upgrade to commit C whose migration fails
half-way, rolled back to B with its data; retention of old runs and old files; status of a broken
stack. Tests run in file order and build on each other's state.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.lib import archive
from scripts.lib.archive import ArchiveWriter
from tests.support.report import announce
from tests.support.stack import PrefectApi, Stack, copy_checkout, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]
GIT = ["git", "-c", "user.name=drill", "-c", "user.email=drill@example.test", "-c", "init.defaultBranch=main"]
FIGURES: dict[str, float] = {}


def git(stack: Stack, *args: str) -> str:
    return stack.run(*GIT, *args).stdout.strip()


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("ops")
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
        announce("operations (issue 13):\n" + "\n".join(f"  {k} = {v:.1f}" for k, v in FIGURES.items()))


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[PrefectApi]:
    with stack.client() as client:
        yield PrefectApi(client)


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


def rebuild(
    source: Path, dest: Path, replace: dict[str, bytes] | None = None, manifest: dict | None = None
) -> Path:
    """A copy of an archive with members replaced and the manifest changed (checksums recomputed)."""
    with tarfile.open(source) as old:
        members = [(m, old.extractfile(m).read() if m.isreg() else None) for m in old]  # type: ignore[union-attr]
    original = json.loads(next(data for m, data in members if m.name == archive.MANIFEST))  # type: ignore[arg-type]
    writer = ArchiveWriter(dest)
    for member, data in members:
        if member.name == archive.MANIFEST:
            continue
        if replace and member.name in replace:
            data = replace[member.name]
            member.size = len(data)
        writer.add_stream(member, io.BytesIO(data) if data is not None else None)
    body = {k: v for k, v in original.items() if k not in ("members", "format")}
    writer.close({**body, **(manifest or {})})
    return dest


# --- the running release -------------------------------------------------------------------------
def test_elt_and_self_check_build_history(stack: Stack, api: PrefectApi) -> None:
    first = api.wait(api.trigger("elt", "daily"), timeout=900)
    assert first["state_type"] == "COMPLETED", first["state"]
    assert rows_loaded(api, first["id"]) > 0
    check = api.wait(api.trigger("platform-check", "self-check"))
    assert check["state_type"] == "COMPLETED", check["state"]
    stack.first_elt = first["id"]  # type: ignore[attr-defined]


def test_backup_waits_for_the_warehouse_lock(stack: Stack, api: PrefectApi) -> None:
    """While a holder (here the test, as an ELT run would) has the lock, the backup copies nothing."""
    # The ELT's Completed event starts customer-scores, which holds the lock for a while: take it
    # once that run lets go (423: no slot free yet).
    deadline = time.monotonic() + 300
    while True:
        taken = api.http.post(
            "/v2/concurrency_limits/increment-with-lease",
            json={"names": ["elt-warehouse-duckdb"], "slots": 1, "lease_duration": 300},
        )
        if taken.status_code != 423 or time.monotonic() > deadline:
            break
        time.sleep(2)
    taken.raise_for_status()
    lease = taken.json()["lease_id"]
    backup = subprocess.Popen(
        ["./scripts/backup"],
        cwd=stack.root,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(20)
        assert backup.poll() is None, backup.communicate()
        assert not list((stack.root / "backups").glob("*.tar.gz")), "copied while the lock was held"
    finally:
        api.http.post("/v2/concurrency_limits/decrement-with-lease", json={"lease_id": lease})
    out, err = backup.communicate(timeout=600)
    assert backup.returncode == 0, err
    assert "waiting for the warehouse's write lock" in err
    assert archive.verify(Path(out.strip().splitlines()[-1]))


def test_backup_writes_a_private_archive_with_a_manifest(stack: Stack, api: PrefectApi) -> None:
    result = command(stack, "./scripts/backup")
    assert result.returncode == 0, result.stderr
    path = Path(last_line(result))
    assert path.parent == stack.root / "backups" and path.is_file(), result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    manifest = archive.verify(path)
    assert manifest["source"]["commit"] == git(stack, "rev-parse", "HEAD") and not manifest["source"]["dirty"]
    assert manifest["prefect"]["version"] == "3.8.8"
    assert manifest["prefect"]["alembic_revision"] == psql(stack, "select version_num from alembic_version")
    assert {archive.POSTGRES_DUMP, "data/warehouse.duckdb"} <= set(manifest["members"])
    assert not [m for m in manifest["members"] if m.startswith(("data/dbt/", "data/dlt-work/"))]
    assert archive.ENV_MEMBER not in manifest["members"] and manifest["with_secrets"] is False
    FIGURES["backup seconds"] = result.seconds  # type: ignore[attr-defined]
    FIGURES["archive KiB"] = path.stat().st_size / 1024
    stack.archive = path  # type: ignore[attr-defined]
    stack.history = history(api)  # type: ignore[attr-defined]
    stack.rows = warehouse_rows(stack)  # type: ignore[attr-defined]
    assert any(name.startswith("analytics") for name in stack.rows), stack.rows  # type: ignore[attr-defined]
    assert any(name.endswith("._dlt_pipeline_state") for name in stack.rows), stack.rows  # type: ignore[attr-defined]


def test_with_secrets_the_archive_holds_env_and_says_so(stack: Stack) -> None:
    result = command(stack, "./scripts/backup", "--with-secrets", "--no-upload")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("WARNING") >= 2 and "every password" in result.stderr
    path = Path(last_line(result))
    assert archive.verify(path)["with_secrets"] is True
    with tarfile.open(path) as tar:
        saved = tar.extractfile(archive.ENV_MEMBER).read()  # type: ignore[union-attr]
    assert saved == (stack.root / ".env").read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()


def test_status_of_a_healthy_stack(stack: Stack) -> None:
    result = command(stack, "./scripts/status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert last_line(result) == "status: healthy"
    for line in ("services", "worker", "late/stuck", "database", "disk", "backup"):
        assert re.search(rf"^  {re.escape(line)}\s+(ok|--)\s", result.stdout, re.MULTILINE), result.stdout
    assert "elt/daily: Completed" in result.stdout
    machine = json.loads(command(stack, "./scripts/status", "--json").stdout)
    assert machine["healthy"] is True and machine["problems"] == []
    assert machine["facts"]["probe"]["workers"][0]["status"] == "ONLINE"
    FIGURES["status seconds"] = result.seconds  # type: ignore[attr-defined]


# --- the restore drill ------------------------------------------------------------------------------
def test_restore_after_down_v_brings_back_history_and_warehouse(stack: Stack, api: PrefectApi) -> None:
    stack.compose("down", "-v", "--timeout", "10")
    volumes = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True).stdout.split()
    assert not [v for v in volumes if v.startswith(stack.project)], "down -v left volumes"
    result = command(stack, "./scripts/restore", str(stack.archive))  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stderr
    assert last_line(result) == f"http://localhost:{stack.port}"
    FIGURES["restore seconds (wiped stack)"] = result.seconds  # type: ignore[attr-defined]
    after = history(api)
    before = stack.history  # type: ignore[attr-defined]
    assert after["deployments"] == before["deployments"]
    assert after["finished_runs"] == before["finished_runs"]
    assert after["task_runs"] == before["task_runs"]
    assert after["artifacts"] == before["artifacts"]
    assert warehouse_rows(stack) == stack.rows  # type: ignore[attr-defined]
    # The ELT runs again on the restored warehouse: dlt's state came back with it (nothing reloaded).
    again = api.wait(api.trigger("elt", "daily"), timeout=900)
    assert again["state_type"] == "COMPLETED", again["state"]
    assert rows_loaded(api, again["id"]) == 0

    def data_tables(rows: dict[str, int]) -> dict[str, int]:
        return {name: n for name, n in rows.items() if "._dlt_" not in name}  # dlt logs each run there

    assert data_tables(warehouse_rows(stack)) == data_tables(stack.rows)  # type: ignore[attr-defined]


def test_a_damaged_archive_is_refused_before_anything_is_touched(stack: Stack, tmp_path: Path) -> None:
    started = server_started_at(stack)
    damaged = rebuild(stack.archive, tmp_path / stack.archive.name, manifest={})  # type: ignore[attr-defined]
    with tarfile.open(damaged) as tar:  # swap the warehouse's bytes but keep the manifest's checksum
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(damaged, "w:gz") as tar:
        for member, data in members:
            if member.name == "data/warehouse.duckdb":
                data = b"\x00" * member.size
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    result = command(stack, "./scripts/restore", str(damaged))
    assert result.returncode == 1
    assert "data/warehouse.duckdb: checksum or size differs" in result.stderr, result.stderr
    assert server_started_at(stack) == started  # nothing was stopped


def test_an_archive_from_a_newer_schema_is_refused(stack: Stack, tmp_path: Path) -> None:
    started = server_started_at(stack)
    newer = rebuild(
        stack.archive,  # type: ignore[attr-defined]
        tmp_path / stack.archive.name,  # type: ignore[attr-defined]
        manifest={"prefect": {"version": "9.9.9", "alembic_revision": "ffffffffffff"}},
    )
    result = command(stack, "./scripts/restore", str(newer))
    assert result.returncode == 1
    assert "revision ffffffffffff (Prefect 9.9.9), which this code's Prefect does not know" in result.stderr
    assert server_started_at(stack) == started


def broken_dump(stack: Stack, sql: str) -> bytes:
    """Prefect's database as pg_dump writes it, after ``sql`` ran on a scratch copy of it."""
    compose = ["docker", "compose", "exec", "-T", "postgres"]
    psql(stack, "DROP DATABASE IF EXISTS scratch", "postgres")
    psql(stack, "CREATE DATABASE scratch", "postgres")
    stack.compose(
        "exec",
        "-T",
        "postgres",
        "sh",
        "-c",
        "pg_dump -U prefect -Fc prefect | pg_restore -U prefect -d scratch",
    )
    psql(stack, sql, "scratch")
    dump = subprocess.run(
        [*compose, "pg_dump", "-U", "prefect", "-Fc", "scratch"],
        cwd=stack.root,
        env=stack.env,
        capture_output=True,
        check=True,
    ).stdout
    psql(stack, "DROP DATABASE scratch", "postgres")
    return dump


def test_a_restore_failing_after_the_swap_puts_everything_back(
    stack: Stack, api: PrefectApi, tmp_path: Path
) -> None:
    """A dump the server starts on but cannot serve runs from: the restore fails after the swap."""
    bad = rebuild(
        stack.archive,  # type: ignore[attr-defined]
        tmp_path / stack.archive.name,  # type: ignore[attr-defined]
        replace={archive.POSTGRES_DUMP: broken_dump(stack, "ALTER TABLE flow_run RENAME TO flow_run_hidden")},
    )
    before, rows = history(api), warehouse_rows(stack)
    result = command(stack, "./scripts/restore", str(bad))
    assert result.returncode == 1, result.stderr
    assert "swapping the restored database and data in" in result.stderr  # it did get that far
    assert "the platform is as it was before the restore" in result.stderr, result.stderr
    assert history(api) == before and warehouse_rows(stack) == rows
    assert psql(stack, "select count(*) from pg_database where datname like 'prefect_%'", "postgres") == "0"
    leftovers = stack.compose(
        "run", "--rm", "--no-deps", "-T", "--entrypoint", "ls", "prefect-ops", "-A", "/data"
    )
    assert not [n for n in leftovers.stdout.split() if n.startswith(".")], leftovers.stdout
    assert command(stack, "./scripts/status").returncode == 0


# --- upgrade and rollback ---------------------------------------------------------------------------
def test_upgrade_to_the_next_commit_keeps_history(stack: Stack, api: PrefectApi) -> None:
    source = stack.root / "flows" / "platform_check.py"
    source.write_text(source.read_text().replace('CODE_MARKER = "v1"', 'CODE_MARKER = "v2"'))
    git(stack, "commit", "-q", "-am", "release B")
    release_b = git(stack, "rev-parse", "HEAD")
    git(stack, "checkout", "-q", "HEAD~1")  # the stack runs release A
    dry = command(stack, "./scripts/upgrade", "--dry-run", release_b)
    assert dry.returncode == 0 and last_line(dry) == release_b, dry.stderr
    assert "1 commit(s)" in dry.stderr and "release B" in dry.stderr
    assert "database migrations: none (Prefect stays 3.8.8" in dry.stderr
    assert git(stack, "rev-parse", "HEAD") != release_b  # a dry run changes nothing
    before = history(api)
    result = command(stack, "./scripts/upgrade", release_b)
    assert result.returncode == 0, result.stderr
    assert last_line(result) == release_b and git(stack, "rev-parse", "HEAD") == release_b
    FIGURES["upgrade seconds"] = result.seconds  # type: ignore[attr-defined]
    after = history(api)
    assert after["deployments"] == before["deployments"]
    assert before["finished_runs"].items() <= after["finished_runs"].items()
    checks = [
        r
        for r in api.post("/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["platform-ops"]}}})
        if r["state_type"] == "COMPLETED"
    ]
    assert checks and any("marker=v2" in line for line in api.logs(checks[0]["id"])), "no self-check of B"
    for service in ("prefect-server", "prefect-deploy"):
        image = stack.image(service)
        previous = image.rsplit(":", 1)[0] + ":previous"
        assert subprocess.run(["docker", "image", "inspect", previous], capture_output=True).returncode == 0
    stack.release_b = release_b  # type: ignore[attr-defined]


CANARY_MIGRATION = """
revision = "aaaa00000001"
down_revision = "{head}"
branch_labels = depends_on = None

from alembic import op


def upgrade():
    op.execute("CREATE TABLE upgrade_canary (id int)")


def downgrade():
    op.execute("DROP TABLE upgrade_canary")
"""
BROKEN_MIGRATION = """
revision = "aaaa00000002"
down_revision = "aaaa00000001"
branch_labels = depends_on = None


def upgrade():
    raise RuntimeError("a migration that fails half-way (the upgrade rollback test)")


def downgrade():
    pass
"""
# Applied in order: the canary (committed in its own transaction), then the failing one.
BROKEN_MIGRATIONS = {
    "2099_01_01_000000_aaaa00000001_upgrade_canary.py": CANARY_MIGRATION,
    "2099_01_01_000001_aaaa00000002_broken.py": BROKEN_MIGRATION,
}


def test_a_failed_upgrade_rolls_back_images_code_and_database(stack: Stack, api: PrefectApi) -> None:
    head = psql(stack, "select version_num from alembic_version")
    folder = stack.root / "docker" / "platform" / "upgrade-test"
    folder.mkdir()
    for name, text in BROKEN_MIGRATIONS.items():
        (folder / name).write_text(text.replace("{head}", head))
    dockerfile = stack.root / "docker" / "platform" / "Dockerfile"
    versions = (
        "/opt/venv/lib/python3.11/site-packages/prefect/server/database/_migrations/versions/postgresql/"
    )
    dockerfile.write_text(
        dockerfile.read_text() + f"USER 0\nCOPY docker/platform/upgrade-test/ {versions}\nUSER 1000\n"
    )
    git(stack, "add", "-A")
    git(stack, "commit", "-q", "-m", "release C: a migration that fails half-way")
    release_c = git(stack, "rev-parse", "HEAD")
    git(stack, "checkout", "-q", stack.release_b)  # type: ignore[attr-defined]
    image = stack.image("prefect-server")
    image_id = subprocess.check_output(["docker", "image", "inspect", "-f", "{{.Id}}", image], text=True)
    before, rows = history(api), warehouse_rows(stack)
    result = command(stack, "./scripts/upgrade", release_c)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED at migrating the database" in result.stderr, result.stderr
    assert "rolled back: the previous release runs with its data" in result.stderr
    FIGURES["failed upgrade + rollback seconds"] = result.seconds  # type: ignore[attr-defined]
    assert git(stack, "rev-parse", "HEAD") == stack.release_b  # type: ignore[attr-defined]
    assert (
        subprocess.check_output(["docker", "image", "inspect", "-f", "{{.Id}}", image], text=True) == image_id
    )
    assert psql(stack, "select version_num from alembic_version") == head
    assert (
        psql(stack, "select to_regclass('public.upgrade_canary') is null") == "t"
    )  # the half-done part undone
    after = history(api)
    assert after["deployments"] == before["deployments"]
    assert after["finished_runs"] == before["finished_runs"] and after["artifacts"] == before["artifacts"]
    assert warehouse_rows(stack) == rows
    check = api.wait(api.trigger("platform-check", "self-check"))
    assert check["state_type"] == "COMPLETED", check["state"]
    assert any("marker=v2" in line for line in api.logs_with(check["id"], "marker="))


# --- retention ------------------------------------------------------------------------------------
def test_old_flow_runs_are_deleted_and_recent_ones_stay(stack: Stack, api: PrefectApi) -> None:
    checks = api.post(
        "/flow_runs/filter",
        {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "sort": "START_TIME_ASC", "limit": 200},
    )
    old, recent = checks[0], checks[-1]  # the first run of the module, and the newest
    assert api.artifacts(old["id"]) and api.logs(old["id"])
    moved = "now() - interval '100 days'"
    psql(stack, f"UPDATE flow_run SET start_time = {moved}, end_time = {moved} WHERE id = '{old['id']}'")
    stack.compose("restart", "prefect-server")  # the vacuum service runs when the server starts, then hourly
    run_id = old["id"]
    left = (  # the run, its logs and its artifacts
        f"select (select count(*) from flow_run where id = '{run_id}')"
        f" + (select count(*) from log where flow_run_id = '{run_id}')"
        f" + (select count(*) from artifact where flow_run_id = '{run_id}')"
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        gone = psql(stack, left) == "0"
        if gone:
            break
        time.sleep(3)
    assert gone, "the vacuum service did not delete a flow run that ended 100 days ago"
    assert psql(stack, f"select count(*) from flow_run where id = '{recent['id']}'") == "1"
    assert psql(stack, f"select count(*) from artifact where flow_run_id = '{recent['id']}'") != "0"
    assert psql(stack, f"select count(*) from task_run where flow_run_id = '{old['id']}'") == "0"


def test_old_results_and_dbt_output_are_pruned_from_the_data_volume(stack: Stack, api: PrefectApi) -> None:
    setup = (
        "set -e; mkdir -p /data/dbt/shop/duckdb-x/target /data/dlt-work/dlt-killed; "
        "echo old > /data/results/old-result; echo new > /data/results/new-result; "
        "echo old > /data/dbt/shop/duckdb-x/target/old.json; "
        "touch -d '100 days ago' /data/results/old-result /data/dbt/shop/duckdb-x/target/old.json "
        "/data/dlt-work/dlt-killed"
    )
    stack.compose("run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", "prefect-ops", "-c", setup)
    run = api.wait(api.trigger("platform-maintenance", "prune-data"))
    assert run["state_type"] == "COMPLETED", run["state"]
    listing = stack.compose(
        "run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", "prefect-ops", "-c",
        "cd /data && find results dbt dlt-work warehouse.duckdb -maxdepth 4 | sort",
    ).stdout.split()  # fmt: skip
    assert "results/new-result" in listing and "warehouse.duckdb" in listing
    assert "results/old-result" not in listing and "dbt/shop/duckdb-x/target/old.json" not in listing
    assert "dlt-work/dlt-killed" not in listing


# --- status of a broken stack -------------------------------------------------------------------------
def test_status_of_a_broken_stack_fails_with_the_reason(stack: Stack) -> None:
    stack.compose("stop", "prefect-worker")
    try:
        result = command(stack, "./scripts/status")
        assert result.returncode == 1
        assert last_line(result).startswith("status: UNHEALTHY: services: prefect-worker exited"), (
            result.stdout
        )
        machine = json.loads(command(stack, "./scripts/status", "--json").stdout)
        assert machine["healthy"] is False and any("prefect-worker" in p for p in machine["problems"])
    finally:
        stack.compose("up", "-d", "--wait", "prefect-worker")
    backups = stack.root / "backups"
    shutil.rmtree(backups)  # the last good backup is gone: the stack is older than ... no, younger
    result = command(stack, "./scripts/status")
    assert result.returncode == 0, result.stdout  # a stack younger than BACKUP_MAX_AGE_HOURS needs none yet
    stale = command(stack, "env", "BACKUP_MAX_AGE_HOURS=0", "./scripts/status")
    assert "not checked (BACKUP_MAX_AGE_HOURS=0)" in stale.stdout
