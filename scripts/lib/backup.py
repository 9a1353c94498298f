"""./scripts/backup: one consistent archive of everything git cannot rebuild (see scripts/lib/archive.py).

    ./scripts/backup                   archive in BACKUP_DIR (default ./backups), path printed last
    ./scripts/backup --with-secrets    .env included too (the archive then holds every password)
    ./scripts/backup --no-upload       skip the S3 copy even when BACKUP_S3_URI is set
    ./scripts/backup --notify-on-failure  post a failure to ALERT_WEBHOOK_URL (the systemd timer)

Order: prefect-ops takes the warehouse's write lock (an ELT run in progress finishes first; one
that starts meanwhile waits), checkpoints DuckDB and streams the data volume; then, still under
the lock, Prefect's database is dumped (pg_dump, custom format, one consistent snapshot), so no ELT
run lands between the two copies; then the lock is released and the manifest written. Then
retention (the newest BACKUP_KEEP archives of this project stay) and the optional S3 upload with
server-side encryption. No run is interrupted; the worker keeps running.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scripts.lib import alert
from scripts.lib.archive import (
    DATA_PREFIX,
    ENV_MEMBER,
    POSTGRES_DUMP,
    STAMP,
    ArchiveWriter,
    archive_name,
    list_archives,
    to_prune,
)
from scripts.lib.s3 import S3, S3Error, parse_uri
from scripts.lib.stack import OpsError, Stack, elapsed, exclusive, say

COUNTS_SQL = (
    "SELECT json_build_object('deployments', (SELECT count(*) FROM deployment),"
    " 'flow_runs', (SELECT count(*) FROM flow_run), 'task_runs', (SELECT count(*) FROM task_run),"
    " 'artifacts', (SELECT count(*) FROM artifact), 'database_bytes', pg_database_size(current_database()),"
    " 'postgres_version', current_setting('server_version'),"
    " 'alembic_revision', (SELECT version_num FROM alembic_version))"
)


def log(message: str) -> None:
    say("backup", message)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def source_facts(stack: Stack) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "commit": stack.git("rev-parse", "HEAD"),
        "describe": stack.git("describe", "--tags", "--always", "--dirty"),
        "dirty": bool(stack.git("status", "--porcelain", "--untracked-files=no")),
    }
    return facts


def backup_dir(stack: Stack) -> Path:
    directory = stack.path_setting("BACKUP_DIR", "backups")
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
    return directory


def dump_database(stack: Stack, dest: Path) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        stack.compose(
            "exec", "-T", "postgres", "pg_dump", "-U", "prefect", "-d", "prefect", "-Fc", stdout=out
        )


class DataSnapshot:
    """prefect-ops streaming the data volume while it holds the warehouse lock; the lock is held
    until ``release`` (the database is dumped meanwhile), or until the container dies."""

    def __init__(self, stack: Stack, lock: bool) -> None:
        timeout = stack.int_setting("ELT_LOCK_TIMEOUT_SECONDS", 3600, 1)
        args = ["data-snapshot", "--hold", "--lock-timeout", str(timeout), *([] if lock else ["--no-lock"])]
        # prefect-ops' progress (stderr) goes straight to the operator.
        self.process = subprocess.Popen(
            stack.ops_args(*args), cwd=stack.root, stdout=subprocess.PIPE, stdin=subprocess.PIPE
        )

    def copy_into(self, writer: ArchiveWriter) -> dict[str, int]:
        """Copies the stream into the archive under data/; returns the file count and bytes."""
        files = data_bytes = 0
        try:
            with tarfile.open(fileobj=self.process.stdout, mode="r|") as stream:
                for member in stream:
                    info = copy.copy(member)
                    info.name = DATA_PREFIX + member.name
                    writer.add_stream(info, stream.extractfile(member) if member.isreg() else None)
                    if member.isreg():
                        files += 1
                        data_bytes += member.size
        except (tarfile.TarError, OSError) as exc:
            raise OpsError(f"copying the data volume failed (prefect-ops above; {exc})") from exc
        if self.process.poll() not in (None, 0):
            raise OpsError("copying the data volume failed: see the prefect-ops lines above")
        return {"files": files, "bytes": data_bytes}

    def release(self) -> None:
        """Lets prefect-ops release the lock and exit; raises when it failed."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            code = self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if code != 0:
            raise OpsError("copying the data volume failed: see the prefect-ops lines above")


def prune(directory: Path, project: str, keep: int) -> list[Path]:
    removed = to_prune(list_archives(directory, project), keep)
    for path in removed:
        path.unlink()
    return removed


def upload(stack: Stack, archive: Path, uri: str) -> str:
    bucket, prefix = parse_uri(uri)
    key = f"{prefix.rstrip('/')}/{archive.name}".lstrip("/")
    s3 = S3.for_bucket(bucket)
    s3.upload(archive, key, stack.setting("BACKUP_S3_KMS_KEY_ID"))
    head = s3.head(key)
    if int(head.get("content-length", -1)) != archive.stat().st_size:
        raise S3Error(
            f"s3://{bucket}/{key} has {head.get('content-length')} bytes, not {archive.stat().st_size}"
        )
    if not head.get("x-amz-server-side-encryption"):
        raise S3Error(f"s3://{bucket}/{key} is not encrypted at rest")
    return f"s3://{bucket}/{key}"


def run(stack: Stack, with_secrets: bool = False, upload_to_s3: bool = True) -> Path:
    """Takes a backup (the caller holds `exclusive`); returns the archive's path."""
    started = time.monotonic()
    keep = stack.int_setting("BACKUP_KEEP", 7, minimum=1)
    s3_uri = stack.setting("BACKUP_S3_URI") if upload_to_s3 else ""
    if s3_uri:
        parse_uri(s3_uri)  # a wrong URI fails now, not after the copy
    running = stack.running()
    if "postgres" not in running:
        raise OpsError("Postgres is not running: start the stack (./scripts/up), then back up")
    lock = "prefect-server" in running
    if not lock:
        if stack.busy_flow_runs():
            raise OpsError("the server is down while flow runs are running: wait for them, then back up")
        log("the server is stopped: nothing can run, so the warehouse is copied without its lock")
    directory = backup_dir(stack)
    now = datetime.now(timezone.utc)  # noqa: UP017 - Python 3.9 on Amazon Linux 2023
    final = directory / archive_name(stack.project, now)
    work = directory / f".tmp-{now.strftime(STAMP)}-{os.getpid()}"
    work.mkdir(mode=0o700)
    writer: ArchiveWriter | None = None
    try:
        log(f"backing up project {stack.project} into {final}")
        image = stack.built_images().get("prefect-server", "")
        prefect_version = stack.image_prefect_version(image) if image else ""
        writer = ArchiveWriter(final)
        log("copying the data volume (DuckDB warehouse with dlt's state, results)")
        snapshot = DataSnapshot(stack, lock)
        try:
            data = snapshot.copy_into(writer)
            # Still under the warehouse lock: no ELT run lands between the two copies.
            log("dumping Prefect's database (pg_dump, custom format)")
            facts = json.loads(stack.psql(COUNTS_SQL))
            dump = work / "prefect.dump"
            dump_database(stack, dump)
        except BaseException:
            with contextlib.suppress(Exception):
                snapshot.release()
            raise
        snapshot.release()
        log(f"database dump: {human(dump.stat().st_size)} ({facts['flow_runs']} flow runs)")
        writer.add_file(dump, POSTGRES_DUMP)
        dump.unlink()
        if with_secrets:
            writer.add_file(stack.root / ".env", ENV_MEMBER)
        manifest = writer.close(
            {
                "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "project": stack.project,
                "host": socket.gethostname(),
                "source": source_facts(stack),
                "prefect": {"version": prefect_version, "alembic_revision": facts.pop("alembic_revision")},
                "postgres": {
                    "version": facts.pop("postgres_version"),
                    "database_bytes": facts.pop("database_bytes"),
                    "dump_bytes": writer.members[POSTGRES_DUMP].size,
                },
                "counts": facts,
                "data_volume": data,
                "warehouse": stack.setting("WAREHOUSE", "duckdb"),
                "with_secrets": with_secrets,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = final.stat().st_size
    revision = manifest["prefect"]["alembic_revision"]
    log(f"archive written: {human(size)} in {elapsed(started)} (database revision {revision})")
    if with_secrets:
        log("WARNING: this archive contains .env with every password and key of the platform.")
        log("WARNING: keep it as carefully as .env itself; never share it.")
    for path in prune(directory, stack.project, keep):
        log(f"removed {path.name} (BACKUP_KEEP={keep})")
    if s3_uri:
        log(f"uploading to {s3_uri} (server-side encryption)")
        log(f"uploaded: {upload(stack, final, s3_uri)}")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./scripts/backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-secrets", action="store_true", help="include .env (every password)")
    parser.add_argument("--no-upload", action="store_true", help="no S3 copy even with BACKUP_S3_URI")
    parser.add_argument("--notify-on-failure", action="store_true", help="post failures to ALERT_WEBHOOK_URL")
    args = parser.parse_args(argv)
    stack = Stack()
    if args.with_secrets:
        log("WARNING: --with-secrets: .env (every password and key) goes into the archive")
    try:
        with exclusive(stack, "backup"):
            path = run(stack, with_secrets=args.with_secrets, upload_to_s3=not args.no_upload)
    except (OpsError, S3Error, OSError, subprocess.TimeoutExpired) as exc:
        log(f"FAILED: {exc}")
        if args.notify_on_failure:
            alert.post(stack, f"backup of {stack.project} on {socket.gethostname()} failed: {exc}")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
