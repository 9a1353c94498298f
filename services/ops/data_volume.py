"""Backup and restore of the data volume (DATA_DIR): the DuckDB warehouse, whose tables also hold
dlt's pipeline state, persisted results, and whatever else the team keeps there (key files, ...).

Snapshot: a tar stream of the volume, taken while holding the warehouse's write lock, after a DuckDB
CHECKPOINT has folded the write-ahead log into the database file, so the copy is one consistent
file. Left out: what the next run rebuilds (dbt's target/ and logs/ under dbt/, dlt's scratch
dlt-work/) and a restore's own working folders.

Restore is staged and reversible, so a failed restore leaves the volume as it was:
  stage   the tar stream is unpacked into DATA_DIR/.restore-<id> (nothing else is touched), and the
          staged warehouse is opened once to prove it is a database;
  swap    every current entry moves to DATA_DIR/.pre-restore-<id>, the staged ones into place
          (renames within the volume: instant, whatever the size);
  unswap  the reverse of swap (the restore failed later);
  finish  deletes the previous data (the restore succeeded).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from services.contract import DATA_DIR
from services.ops import log
from services.ops.warehouse_lock import holding_warehouse_lock

# Top-level entries of the volume that are rebuilt by the next run, so never backed up or restored.
REBUILT = frozenset({"dbt", "dlt-work", "lost+found"})
STAGE_PREFIX = ".restore-"
PREVIOUS_PREFIX = ".pre-restore-"
RESTORE_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")
# A writer that ignores the lock (opened the file outside the ELT) is waited for this long.
OPEN_RETRY_SECONDS = 30


class DataVolumeError(Exception):
    """The volume cannot be backed up or restored as asked; the message says why."""


def warehouse_file() -> Path:
    return Path(os.environ.get("DUCKDB_PATH") or f"{DATA_DIR}/warehouse.duckdb")


def is_restore_dir(name: str) -> bool:
    return name.startswith((STAGE_PREFIX, PREVIOUS_PREFIX))


def backed_up_entries(data_dir: Path) -> list[Path]:
    return sorted(
        entry for entry in data_dir.iterdir() if entry.name not in REBUILT and not is_restore_dir(entry.name)
    )


def _open_duckdb(path: Path, read_only: bool) -> Any:
    import duckdb

    deadline = time.monotonic() + OPEN_RETRY_SECONDS
    while True:
        try:
            return duckdb.connect(
                str(path), read_only=read_only, config={"memory_limit": "128MB", "threads": 1}
            )
        except duckdb.Error as exc:
            locked = "lock" in str(exc).lower()
            if locked and time.monotonic() < deadline:
                time.sleep(1)
                continue
            if locked:
                raise DataVolumeError(
                    f"cannot open the warehouse {path}: {exc}. A process outside the ELT holds it open "
                    "(every writer must take the warehouse lock, README 'Flows'); stop it and retry."
                ) from exc
            raise DataVolumeError(f"{path} is not a usable DuckDB database: {exc}") from exc


def checkpoint(path: Path) -> None:
    """Folds DuckDB's write-ahead log into the database file, so the file alone is the database."""
    connection = _open_duckdb(path, read_only=False)
    try:
        connection.execute("CHECKPOINT")
    finally:
        connection.close()
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        raise DataVolumeError(f"{wal} still exists after a checkpoint: another process writes the warehouse")


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def write_tar(out: BinaryIO, data_dir: Path) -> int:
    """Streams the backed-up entries of ``data_dir`` as an uncompressed tar; returns the file count."""
    files = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for top in backed_up_entries(data_dir):
            paths = [top]
            if top.is_dir() and not top.is_symlink():
                for folder, dirs, names in os.walk(top):
                    dirs.sort()
                    paths += [Path(folder) / name for name in sorted(dirs + names)]
            for path in paths:
                if not (path.is_symlink() or path.is_file() or path.is_dir()):
                    continue  # sockets, fifos: nothing to restore
                tar.add(path, arcname=str(path.relative_to(data_dir)), recursive=False)
                files += not path.is_dir()
    return files


def snapshot(out: BinaryIO, data_dir: Path, lock_timeout: float | None, hold: BinaryIO | None = None) -> None:
    """Writes the volume's tar stream to ``out``, the warehouse consistent (see module docstring).

    ``hold``: after the stream, keep the lock until this input ends (the backup dumps Prefect's
    database meanwhile, so no ELT run lands between the two copies). ``lock_timeout`` None: take no
    lock, for a stack whose server and worker are stopped (nothing can run; the lock lives there).
    """
    warehouse = warehouse_file()
    if data_dir not in warehouse.parents:
        log(f"DUCKDB_PATH {warehouse} is outside {data_dir}: not in this backup")
    with contextlib.ExitStack() as held:
        if lock_timeout is not None:
            log("waiting for the warehouse's write lock (an ELT run in progress finishes first)")
            name = held.enter_context(holding_warehouse_lock("duckdb", lock_timeout))
            log(f"holding {name}: no run writes the warehouse until the backup is done")
        before = None
        if warehouse.is_file() and data_dir in warehouse.parents:
            checkpoint(warehouse)
            before = _fingerprint(warehouse)
        files = write_tar(out, data_dir)
        out.flush()
        if before is not None and _fingerprint(warehouse) != before:
            raise DataVolumeError(f"{warehouse} changed during the copy: a writer ignores the lock")
        size = f", warehouse {before[0]} bytes" if before else ", no warehouse file"
        log(f"data volume copied: {files} files{size}")
        if hold is not None:
            hold.read()  # until the backup closes it


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuses what could write outside the staging folder (Python 3.11.2 has no tarfile filters)."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise DataVolumeError(f"unsafe path in the archive: {member.name!r}")
    if not (member.isreg() or member.isdir() or member.issym()):
        raise DataVolumeError(f"{member.name!r}: only files, folders and symlinks are restored")
    if member.issym():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or ".." in (path.parent / target).parts:
            raise DataVolumeError(f"symlink {member.name!r} points outside the volume: {member.linkname!r}")


def _folder(data_dir: Path, prefix: str, restore_id: str) -> Path:
    if not RESTORE_ID.match(restore_id):
        raise DataVolumeError(f"bad restore id {restore_id!r}")
    return data_dir / f"{prefix}{restore_id}"


def stage(inp: BinaryIO, data_dir: Path, restore_id: str) -> int:
    """Unpacks a tar stream into the staging folder; returns the file count. Touches nothing else."""
    target = _folder(data_dir, STAGE_PREFIX, restore_id)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o700)
    files = 0
    with tarfile.open(fileobj=inp, mode="r|") as tar:
        for member in tar:
            _check_member(member)
            tar.extract(member, target, set_attrs=not member.issym())
            files += member.isreg()
    warehouse = warehouse_file()
    if data_dir in warehouse.parents and (target / warehouse.relative_to(data_dir)).is_file():
        warehouse = target / warehouse.relative_to(data_dir)
        connection = _open_duckdb(warehouse, read_only=True)
        try:
            tables = connection.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0]
        except Exception as exc:
            raise DataVolumeError(f"the archive's warehouse is not a usable DuckDB database: {exc}") from exc
        finally:
            connection.close()
        log(f"staged warehouse opens: {tables} tables")
    log(f"staged {files} files in {target}")
    return files


def swap(data_dir: Path, restore_id: str) -> None:
    staged = _folder(data_dir, STAGE_PREFIX, restore_id)
    previous = _folder(data_dir, PREVIOUS_PREFIX, restore_id)
    if not staged.is_dir():
        raise DataVolumeError(f"nothing staged for restore {restore_id}")
    previous.mkdir(mode=0o700)
    for entry in sorted(data_dir.iterdir()):
        if not is_restore_dir(entry.name):
            entry.rename(previous / entry.name)
    for entry in sorted(staged.iterdir()):
        entry.rename(data_dir / entry.name)
    staged.rmdir()
    log(f"restored data in place; the previous data waits in {previous} until the restore succeeds")


def unswap(data_dir: Path, restore_id: str) -> None:
    staged = _folder(data_dir, STAGE_PREFIX, restore_id)
    previous = _folder(data_dir, PREVIOUS_PREFIX, restore_id)
    if previous.is_dir():
        staged.mkdir(mode=0o700, exist_ok=True)
        for entry in sorted(data_dir.iterdir()):
            if not is_restore_dir(entry.name):
                entry.rename(staged / entry.name)
        for entry in sorted(previous.iterdir()):
            entry.rename(data_dir / entry.name)
        previous.rmdir()
        log("the previous data is back in place")
    shutil.rmtree(staged, ignore_errors=True)


def finish(data_dir: Path, restore_id: str) -> None:
    for prefix in (PREVIOUS_PREFIX, STAGE_PREFIX):
        shutil.rmtree(_folder(data_dir, prefix, restore_id), ignore_errors=True)


def leftovers(data_dir: Path) -> list[str]:
    """Folders of an interrupted restore (the previous data may be in one): status reports them."""
    return sorted(entry.name for entry in data_dir.iterdir() if is_restore_dir(entry.name))
