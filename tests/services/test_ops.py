"""services/ops: the data volume's snapshot and staged restore (real DuckDB files), the warehouse
lock (a real Prefect test server), settling runs after a restore, the schema check, the probe."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from flows.warehouses.lock import warehouse_lock_name as flows_lock_name
from services.ops import data_volume
from services.ops.data_volume import DataVolumeError, snapshot, stage, swap, unswap
from services.ops.schema import compare, postgres_revisions
from services.ops.warehouse_lock import holding_warehouse_lock, warehouse_lock_name


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    (data / "results").mkdir(parents=True)
    (data / "results" / "r1").write_text("result one")
    (data / "keys").mkdir()
    (data / "keys" / "snowflake.pem").write_text("-----BEGIN PRIVATE KEY-----")
    (data / "dbt" / "shop" / "duckdb-analytics" / "target").mkdir(parents=True)
    (data / "dbt" / "shop" / "duckdb-analytics" / "target" / "manifest.json").write_text("{}")
    (data / "dlt-work" / "dlt-abc").mkdir(parents=True)
    monkeypatch.setenv("DUCKDB_PATH", str(data / "warehouse.duckdb"))
    return data


def write_warehouse(path: Path, rows: int, leave_wal: bool) -> None:
    """Writes a table; with leave_wal the process dies without a checkpoint, as a killed run would."""
    code = "\n".join(
        [
            "import duckdb, os, sys",
            "c = duckdb.connect(sys.argv[1])",
            "c.execute(\"SET checkpoint_threshold = '1TB'\")",
            "c.execute(f'CREATE OR REPLACE TABLE t AS SELECT range AS i FROM range({sys.argv[2]})')",
            "os._exit(0)" if leave_wal else "c.close()",
        ]
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(rows)], check=True)


def take_snapshot(data: Path, lock_timeout: float | None = None) -> bytes:
    out = io.BytesIO()
    snapshot(out, data, lock_timeout)
    return out.getvalue()


def test_snapshot_is_one_checkpointed_warehouse_file_and_the_rest_of_the_volume(data_dir: Path) -> None:
    warehouse = data_dir / "warehouse.duckdb"
    write_warehouse(warehouse, 1234, leave_wal=True)
    assert warehouse.with_name("warehouse.duckdb.wal").exists()  # rows only in the log so far
    with tarfile.open(fileobj=io.BytesIO(take_snapshot(data_dir)), mode="r:") as tar:
        names = tar.getnames()
        copied = tar.extractfile("warehouse.duckdb").read()  # type: ignore[union-attr]
    assert "warehouse.duckdb.wal" not in names
    assert {"results/r1", "keys/snowflake.pem", "warehouse.duckdb"} <= set(names)
    assert not [n for n in names if n.startswith(("dbt", "dlt-work"))]
    alone = data_dir.parent / "copy.duckdb"
    alone.write_bytes(copied)  # the file alone, without its log, holds every row
    assert duckdb.connect(str(alone), read_only=True).execute("select count(*) from t").fetchone()[0] == 1234


def test_stage_swap_and_unswap_leave_the_volume_as_it_was(data_dir: Path) -> None:
    write_warehouse(data_dir / "warehouse.duckdb", 10, leave_wal=False)
    archived = take_snapshot(data_dir)
    # The volume moves on after the backup.
    write_warehouse(data_dir / "warehouse.duckdb", 99, leave_wal=False)
    (data_dir / "results" / "r2").write_text("newer")
    before = {p.relative_to(data_dir): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}

    assert stage(io.BytesIO(archived), data_dir, "t1") == 3
    assert {
        p.relative_to(data_dir): p.read_bytes()
        for p in data_dir.rglob("*")
        if p.is_file() and ".restore-" not in str(p)
    } == before
    swap(data_dir, "t1")
    rows = (
        duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
        .execute("select count(*) from t")
        .fetchone()
    )
    assert rows[0] == 10 and not (data_dir / "results" / "r2").exists() and not (data_dir / "dbt").exists()
    assert data_volume.leftovers(data_dir) == [".pre-restore-t1"]
    unswap(data_dir, "t1")  # the restore failed later: everything goes back
    assert {p.relative_to(data_dir): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()} == before
    assert data_volume.leftovers(data_dir) == []


def test_finish_keeps_the_restored_data_only(data_dir: Path) -> None:
    archived = take_snapshot(data_dir)
    (data_dir / "results" / "r2").write_text("newer")
    stage(io.BytesIO(archived), data_dir, "t2")
    swap(data_dir, "t2")
    data_volume.finish(data_dir, "t2")
    assert sorted(p.name for p in data_dir.iterdir()) == ["keys", "results"]
    assert sorted(p.name for p in (data_dir / "results").iterdir()) == ["r1"]


def tar_of(member: tarfile.TarInfo, data: bytes = b"") -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    out.seek(0)
    return out


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (tarfile.TarInfo("../escape"), "unsafe path"),
        (tarfile.TarInfo("/etc/cron.d/x"), "unsafe path"),
        (
            (lambda i: (setattr(i, "type", tarfile.SYMTYPE), setattr(i, "linkname", "/etc/passwd"), i)[-1])(
                tarfile.TarInfo("link")
            ),
            "points outside",
        ),
        ((lambda i: (setattr(i, "type", tarfile.CHRTYPE), i)[-1])(tarfile.TarInfo("dev")), "only files"),
    ],
)
def test_stage_refuses_what_could_write_outside_the_volume(
    data_dir: Path, member: tarfile.TarInfo, message: str
) -> None:
    with pytest.raises(DataVolumeError, match=message):
        stage(tar_of(member, b"x"), data_dir, "bad")
    assert not (data_dir.parent / "escape").exists()


def test_a_staged_warehouse_that_is_not_a_database_is_refused(data_dir: Path) -> None:
    with pytest.raises(DataVolumeError, match="not a usable DuckDB database"):
        stage(tar_of(tarfile.TarInfo("warehouse.duckdb"), b"garbage" * 100), data_dir, "bad")
    assert not (data_dir / "warehouse.duckdb").exists()  # nothing swapped in


def test_the_ops_lock_is_the_elts_lock() -> None:
    assert warehouse_lock_name("duckdb") == flows_lock_name("duckdb") == "elt-warehouse-duckdb"


@pytest.fixture
def lock_kind() -> str:
    return f"test{time.monotonic_ns()}"


def test_the_snapshot_waits_for_the_lock_holder(prefect_server: None, lock_kind: str) -> None:
    acquired, released = threading.Event(), threading.Event()

    def hold_for_a_while() -> None:
        with holding_warehouse_lock(lock_kind, 30):
            acquired.set()
            time.sleep(3)
        released.set()

    holder = threading.Thread(target=hold_for_a_while)
    holder.start()
    assert acquired.wait(60), "the first holder never got the lock"
    started = time.monotonic()
    with holding_warehouse_lock(lock_kind, 60):
        assert released.is_set(), "acquired while another holder still had the slot"
    assert time.monotonic() - started > 1
    holder.join()


def test_waiting_for_the_lock_times_out(prefect_server: None, lock_kind: str) -> None:
    with holding_warehouse_lock(lock_kind, 30), pytest.raises(TimeoutError):  # noqa: SIM117
        with holding_warehouse_lock(lock_kind, 2):
            pass


def test_schema_revisions_are_read_from_the_migration_files(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text('revision = "aaa111"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text('revision = "bbb222"\ndown_revision = "aaa111"\n')
    (tmp_path / "c.py").write_text('revision = "ccc333"\ndown_revision = "bbb222"\n')
    known = postgres_revisions(tmp_path)
    assert known == ["ccc333", "bbb222", "aaa111"]
    assert (compare("ccc333", known), compare("aaa111", known), compare("fff999", known)) == (
        "current",
        "older",
        "unknown",
    )
    installed = postgres_revisions()  # this environment's Prefect, as in the image
    assert len(installed) > 100 and compare(installed[-1], installed) == "older"


@pytest.fixture
def client(prefect_server: None) -> Iterator[object]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        yield client


def test_settle_crashes_runs_left_running_and_frees_held_slots(client, lock_kind: str) -> None:  # type: ignore[no-untyped-def]
    from prefect import flow
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.states import Completed, Running

    from services.ops.runs import settle

    @flow(name=f"settle-{lock_kind}")
    def noop() -> None:
        pass

    flow_id = client.create_flow(noop)
    stuck = client.create_flow_run(noop, state=Running())
    done = client.create_flow_run(noop, state=Completed())
    limit = f"elt-warehouse-{lock_kind}"
    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1, active_slots=1))
    changed = settle(client, "restore of the backup taken 2026-11-25T05:00:00Z")
    assert changed["flow_runs_crashed"] >= 1 and changed["limits_freed"] >= 1
    state = client.read_flow_run(stuck.id).state
    assert (
        state.type.value == "CRASHED" and "restore of the backup taken 2026-11-25T05:00:00Z" in state.message
    )
    assert client.read_flow_run(done.id).state.type.value == "COMPLETED"
    assert client.read_global_concurrency_limit_by_name(limit).active_slots == 0
    assert flow_id


def test_probe_reports_the_pool_runs_and_volume(client, data_dir: Path, lock_kind: str) -> None:  # type: ignore[no-untyped-def]
    from prefect import flow
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Completed, Failed

    from services.ops.probe import collect

    pool = f"pool-{lock_kind}"
    client.create_work_pool(WorkPoolCreate(name=pool, type="process"))

    @flow(name=f"probe-{lock_kind}")
    def noop() -> None:
        pass

    for state in (Completed(), Failed()):
        run = client.create_flow_run(noop, state=state)
        client.set_flow_run_state(run.id, state, force=True)
    facts = collect(data_dir, pool)
    assert facts["api_error"] is None, facts["api_error"]
    assert facts["work_pool"]["name"] == pool and facts["workers"] == []
    assert facts["data_volume"]["bytes"] > 0 and facts["data_volume"]["disk_total_bytes"] > 0
    assert facts["prefect_version"] == facts["server_version"]
    unreachable = collect(data_dir, "no-such-pool")
    assert "ObjectNotFound" in unreachable["api_error"] and unreachable["data_volume"]["bytes"] > 0
