"""End to end: the backup and restore drill on one stack (issue 13), with the commands an operator types.

The stack runs commit "release A" of a git copy of the checkout and runs the ELT; then: a backup
waits while an ELT run would hold the warehouse; a private archive with a manifest; status of a
healthy stack; `docker compose down -v`; restore; the same deployments, runs, task runs, artifacts
and warehouse rows, and an ELT run that finds dlt's state (loads nothing new); refused archives
(damaged, newer schema) that touch nothing; a restore failing after the swap that puts everything
back. Tests run in file order and build on each other's state. Upgrades: test_operations_upgrade.py.
"""

from __future__ import annotations

import io
import json
import re
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.lib import archive
from scripts.lib.archive import ArchiveWriter
from tests.support.operations import (
    build_history,
    command,
    git,
    history,
    last_line,
    psql,
    release_stack,
    rows_loaded,
    server_started_at,
    warehouse_rows,
)
from tests.support.stack import PrefectApi, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    with release_stack(
        tmp_path_factory.mktemp("ops-restore"), request, "backup and restore (issue 13)", FIGURES
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[PrefectApi]:
    with stack.client() as client:
        yield PrefectApi(client)


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
    build_history(stack, api)


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
