"""./scripts/restore ARCHIVE: puts a backup back, on a running, stopped or wiped stack (or a new host).

    ./scripts/restore backups/prefect-platform-backup-20261125T050000Z.tar.gz
    ./scripts/restore s3://my-bucket/prefect-platform/      newest archive of this project there
    ./scripts/restore s3://my-bucket/prefect-platform/prefect-platform-backup-...tar.gz

Nothing is touched until the whole archive has passed its checksums and its database revision is
one this code's Prefect knows (a newer schema is refused). Then, with the worker and server stopped
(no run writes meanwhile; running flow-run containers make it refuse):
  1. the dump is restored into a second database, prefect_restore, and the data volume is unpacked
     into a staging folder on the volume: the live data is still untouched;
  2. both are swapped in by renames (the database in one transaction);
  3. the stack starts (prefect-migrate upgrades an older schema); runs that were Running when the
     backup was taken are marked Crashed and the slots they held are freed, so none stays stuck;
  4. the previous database and data are deleted.
A failure before 4 swaps the previous ones back and returns the stack to the state it was in
(running, stopped, or absent). The UI's URL is printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from scripts.lib import envfile
from scripts.lib.archive import DATA_PREFIX, ENV_MEMBER, NAME, POSTGRES_DUMP, ArchiveError, members, verify
from scripts.lib.s3 import S3, S3Error, parse_uri
from scripts.lib.stack import DATABASE_CLIENTS, OpsError, Stack, elapsed, exclusive, say, ui_url

RESTORE_DB = "prefect_restore"
CHUNK = 1 << 20


def log(message: str) -> None:
    say("restore", message)


def fetch(stack: Stack, source: str) -> Path:
    """A local archive as is; an s3:// object (or the newest archive under an s3:// prefix) downloaded."""
    if not source.startswith("s3://"):
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise OpsError(f"{source}: no such archive (ls {stack.path_setting('BACKUP_DIR', 'backups')})")
        return path
    bucket, key = parse_uri(source)
    s3 = S3.for_bucket(bucket)
    if not key or key.endswith("/"):
        candidates = sorted(
            k
            for k in s3.keys(key)
            if (m := NAME.match(k.rsplit("/", 1)[-1])) and m.group("project") == stack.project
        )
        if not candidates:
            raise OpsError(f"no archive of project {stack.project} under {source}")
        key = candidates[-1]
        log(f"newest archive there: s3://{bucket}/{key}")
    directory = stack.path_setting("BACKUP_DIR", "backups")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest = directory / key.rsplit("/", 1)[-1]
    log(f"downloading s3://{bucket}/{key} to {dest}")
    s3.download(key, dest)
    return dest


def ensure_env(stack: Stack, archive: Path, manifest: dict[str, Any]) -> None:
    """A new host has no .env: take the archive's (with --with-secrets backups) or generate one."""
    env_path = stack.root / ".env"
    if not env_path.exists() and manifest.get("with_secrets"):
        for member, source in members(archive):
            if member.name == ENV_MEMBER and source is not None:
                envfile.write_atomically(env_path, source.read().decode(), 0o600)
                log(".env taken from the archive (it was backed up --with-secrets)")
                break
    elif not env_path.exists():
        log(".env is missing: generating one with fresh secrets (source credentials must be set again)")
    envfile.ensure(env_path, stack.root / ".env.example", {}, forced={"PLATFORM_DIR": str(stack.root)})
    stack.reload()


def ensure_images(stack: Stack) -> None:
    missing = [
        image for image in stack.built_images(active_only=True).values() if not stack.image_exists(image)
    ]
    if missing:
        log(f"building the images ({', '.join(missing)} missing; the first build takes minutes)")
        stack.compose("build", "--quiet", timeout=3600)


def check_schema(stack: Stack, manifest: dict[str, Any]) -> None:
    revision = manifest["prefect"]["alembic_revision"]
    result = stack.ops("schema-check", revision, check=False)
    if result.returncode == 3:
        taken_at = manifest.get("source", {}).get("describe") or "see its manifest.json"
        version = manifest["prefect"].get("version")
        raise OpsError(
            f"the archive's database is at revision {revision} (Prefect {version}), "
            "which this code's Prefect does not know: it comes from a newer release. Check out the commit "
            f"it was taken with ({taken_at}), then restore there."
        )
    if result.returncode != 0:
        raise OpsError(f"cannot check the archive's database revision: {result.stderr.strip()[-600:]}")


def _restore_dump(stack: Stack, source: IO[bytes]) -> None:
    """Streams the custom-format dump into pg_restore, into prefect_restore, as one transaction."""
    args = [
        "pg_restore",
        "-U",
        "prefect",
        "-d",
        RESTORE_DB,
        "--no-owner",
        "--exit-on-error",
        "--single-transaction",
    ]
    process = subprocess.Popen(
        ["docker", "compose", "exec", "-T", "postgres", *args],
        cwd=stack.root,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # pg_restore stopped reading: its error follows
        while chunk := source.read(CHUNK):
            process.stdin.write(chunk)
    _, err = process.communicate()
    if process.returncode != 0:
        raise OpsError(f"pg_restore failed: {err.decode(errors='replace').strip()[-1200:]}")


def unpack(stack: Stack, archive: Path, restore_id: str) -> None:
    """One pass over the archive: the dump into prefect_restore, data/ into the volume's staging folder."""
    stack.psql(f"DROP DATABASE IF EXISTS {RESTORE_DB}", "postgres")
    stack.psql(f"CREATE DATABASE {RESTORE_DB} OWNER prefect", "postgres")
    stager = subprocess.Popen(stack.ops_args("data-stage", restore_id), cwd=stack.root, stdin=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=stager.stdin, mode="w|", format=tarfile.PAX_FORMAT) as data:
            for member, source in members(archive):
                if member.name == POSTGRES_DUMP and source is not None:
                    log("restoring Prefect's database into a new database (the live one is untouched)")
                    _restore_dump(stack, source)
                    log("unpacking the data volume into a staging folder (the live data is untouched)")
                elif member.name.startswith(DATA_PREFIX):
                    member.name = member.name[len(DATA_PREFIX) :]
                    data.addfile(member, source)
        assert stager.stdin is not None
        stager.stdin.close()
        if stager.wait() != 0:
            raise OpsError("staging the data volume failed: see the prefect-ops lines above")
    except BaseException as exc:
        if stager.poll() is None:
            stager.kill()
            stager.wait()
        if isinstance(exc, BrokenPipeError):
            raise OpsError("staging the data volume failed: see the prefect-ops lines above") from None
        raise


def swap_databases(stack: Stack, restore_id: str, back: bool = False) -> None:
    """Renames in one transaction: prefect <-> prefect_restore, the previous kept as prefect_pre_<id>."""
    previous = f"prefect_pre_{restore_id}"
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname IN ('prefect', '{RESTORE_DB}', '{previous}') AND pid <> pg_backend_pid();"
    )
    if back:
        renames = (
            f"ALTER DATABASE prefect RENAME TO {RESTORE_DB}; ALTER DATABASE {previous} RENAME TO prefect;"
        )
    else:
        renames = (
            f"ALTER DATABASE prefect RENAME TO {previous}; ALTER DATABASE {RESTORE_DB} RENAME TO prefect;"
        )
    stack.psql(terminate + renames, "postgres")


def database_exists(stack: Stack, name: str) -> bool:
    return stack.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'", "postgres") == "1"


def start_stack(stack: Stack, timeout: float) -> None:
    """./scripts/up without a build: the services the settings ask for (profiles), init, deploy."""
    args = ["./scripts/up", "--no-build", "--timeout", str(int(timeout))]
    up = stack.run(args, check=False, timeout=timeout + 300, stdout=sys.stderr)  # its progress, live
    if up.returncode != 0:
        raise OpsError(f"./scripts/up failed: {up.stderr.strip()[-1500:]}")
    stack.reload()


@dataclass
class Progress:
    """How far a restore got: what its rollback has to undo."""

    stopped: list[str] = field(default_factory=list)
    database_staged: bool = False
    database_swapped: bool = False
    data_staged: bool = False
    data_swapped: bool = False


def restore(stack: Stack, archive: Path, timeout: float = 900) -> dict[str, Any]:
    """Restores ``archive`` (the caller holds `exclusive`); returns its manifest."""
    started = time.monotonic()
    log(f"checking {archive.name}: every checksum, before touching anything")
    try:
        manifest = verify(archive)
    except ArchiveError as exc:
        raise OpsError(str(exc)) from None
    counts = manifest.get("counts", {})
    source = manifest.get("source", {}).get("describe") or "an unknown commit"
    log(
        f"backup of {manifest.get('project')} taken {manifest.get('created')} at {source}: "
        f"{counts.get('deployments')} deployments, {counts.get('flow_runs')} flow runs, "
        f"Prefect {manifest['prefect'].get('version')}"
    )
    ensure_env(stack, archive, manifest)
    # What exists now, before anything below creates a volume: a failed restore returns to it.
    was_running = stack.running()
    existed = stack.project_volumes()
    restore_id = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")  # noqa: UP017 - Python 3.9
    progress = Progress()
    try:
        ensure_images(stack)
        revision = manifest["prefect"]["alembic_revision"]
        log(f"checking database revision {revision} against this code's Prefect")
        check_schema(stack, manifest)
        running_flows = stack.busy_flow_runs()
        if running_flows:
            raise OpsError(
                f"flow runs are running ({', '.join(running_flows)}): wait for them or cancel them, then "
                "restore (a restore stops the worker and replaces the database they report to)"
            )
        progress.stopped = [name for name in was_running if name != "postgres"]
        if progress.stopped:
            log(f"stopping {', '.join(progress.stopped)} (no run may write while the data is replaced)")
            stack.compose("stop", "-t", "30", *progress.stopped)
        stack.wait_healthy(["postgres"], timeout)
        progress.database_staged = progress.data_staged = True
        unpack(stack, archive, restore_id)
        revision = stack.alembic_revision(RESTORE_DB)
        if revision != manifest["prefect"]["alembic_revision"]:
            raise OpsError(f"the restored database is at revision {revision!r}, not the manifest's")
        log("swapping the restored database and data in")
        swap_databases(stack, restore_id)
        progress.database_swapped = True
        stack.ops("data-swap", restore_id)
        progress.data_swapped = True
        log("starting the server on the restored data (an older schema is migrated now)")
        stack.wait_healthy(["prefect-server"], timeout)
        settled = stack.ops_json(
            "settle-runs", "--reason", f"restore of the backup taken {manifest.get('created')}"
        )
        log(
            f"{settled['flow_runs_crashed']} flow runs left unfinished at backup time marked Crashed, "
            f"{settled['limits_freed']} concurrency limits' stale slots freed"
        )
        log("starting the rest of the stack (./scripts/up --no-build)")
        start_stack(stack, timeout)
    except BaseException as exc:
        log(f"FAILED: {exc}")
        log("returning the platform to where it was")
        _roll_back(stack, restore_id, progress, was_running, existed, timeout)
        if isinstance(exc, OpsError):
            raise OpsError(f"{exc} (the platform is as it was before the restore)") from None
        raise
    stack.psql(f"DROP DATABASE IF EXISTS prefect_pre_{restore_id}", "postgres")
    stack.ops("data-finish", restore_id)
    runs = stack.psql("SELECT count(*) FROM flow_run WHERE state_type <> 'SCHEDULED'")
    log(f"restored in {elapsed(started)}: the stack runs on the backup of {manifest.get('created')}")
    log(f"{runs} flow runs in its history")
    return manifest


def _roll_back(
    stack: Stack,
    restore_id: str,
    progress: Progress,
    was_running: list[str],
    existed: set[str],
    timeout: float,
) -> None:
    """Returns the platform to where it was; each step runs even when an earlier one failed."""
    steps: list[tuple[str, Any]] = []
    touched = progress.database_staged or progress.data_staged
    if touched:
        running = [s for s in stack.running() if s != "postgres"]
        steps.append(
            ("stopping the services", lambda: running and stack.compose("stop", "-t", "30", *running))
        )
        steps.append(("starting postgres", lambda: stack.wait_healthy(["postgres"], timeout)))
    if progress.database_swapped:
        steps.append(
            ("swapping the previous database back", lambda: swap_databases(stack, restore_id, back=True))
        )
    if progress.database_staged:
        drop = f"DROP DATABASE IF EXISTS {RESTORE_DB}"
        steps.append(("dropping the restored database", lambda: stack.psql(drop, "postgres")))
    if progress.data_staged:
        label = "putting the previous data back" if progress.data_swapped else "discarding the staged data"
        steps.append((label, lambda: stack.ops("data-unswap", restore_id)))
    created = stack.project_volumes() - existed
    if created:  # the stack was wiped (or never started): it goes back to having no data
        steps.append(("removing what the restore created", lambda: _remove_stack(stack, sorted(created))))
    elif any(name in was_running for name in DATABASE_CLIENTS):
        steps.append(("starting the stack as it was", lambda: stack.wait_healthy([], timeout)))
    elif touched and "postgres" not in was_running:
        steps.append(("stopping postgres", lambda: stack.compose("stop", "-t", "30", "postgres")))
    for label, step in steps:
        try:
            step()
        except Exception as exc:  # keep going: every later step still helps
            log(f"rollback step failed ({label}): {exc}")


def _remove_stack(stack: Stack, volumes: list[str]) -> None:
    stack.compose("down", "-t", "30")
    for name in volumes:
        stack.run(["docker", "volume", "rm", name], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./scripts/restore", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "archive", help="a local archive, or s3://bucket/key (s3://bucket/prefix/ = newest there)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each start (900)")
    args = parser.parse_args(argv)
    stack = Stack()
    try:
        with exclusive(stack, "restore"):
            restore(stack, fetch(stack, args.archive), args.timeout)
    except (OpsError, S3Error, OSError, subprocess.TimeoutExpired) as exc:
        log(f"FAILED: {exc}")
        return 1
    print(ui_url(stack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
