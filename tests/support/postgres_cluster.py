"""A throwaway Postgres cluster in a temporary folder, from Debian's postgresql binaries: for the
SQL-source tests and for benchmarks whose Prefect server must use Postgres, as the stack's does."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

MISSING = (
    "Postgres binaries not found (/usr/lib/postgresql/*/bin/initdb): "
    "install them with `apt-get install -y postgresql` (./scripts/test does, as root)"
)


def postgres_bindir() -> Path | None:
    """The newest installed server's bin/ folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def throwaway_postgres(fsync: bool = False, port: int | None = None) -> Iterator[str]:
    """Starts a cluster on a loopback port (``port``, or a free one); yields
    postgresql://postgres@127.0.0.1:PORT/postgres.

    fsync off for tests (nothing to keep); benchmarks that stand in for the stack's database pass
    fsync=True, as Postgres runs there.
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise FileNotFoundError(MISSING)
    root = Path(tempfile.mkdtemp(prefix="pg-throwaway-"))
    # initdb refuses to run as root: run the server as an unprivileged user.
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(root, user=user)
        run_as = ["runuser", "-u", user, "--"]
    port = port or _free_port()
    pgdata = root / "data"
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1" + ("" if fsync else " -c fsync=off")
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(pgdata)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
