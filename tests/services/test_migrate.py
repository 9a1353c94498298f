"""services/migrate: Prefect's schema upgrade, started before Postgres answers, applied once it does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from services.database import database_dsn
from tests.support import REPO
from tests.support.postgres_cluster import MISSING, postgres_bindir, throwaway_postgres
from tests.support.stack import free_port

pytestmark = pytest.mark.timeout(240)


def test_the_servers_url_becomes_asyncpgs_dsn_and_anything_else_is_refused() -> None:
    url = "postgresql+asyncpg://prefect:s3cret@postgres:5432/prefect"
    assert (
        database_dsn({"PREFECT_API_DATABASE_CONNECTION_URL": url})
        == "postgresql://prefect:s3cret@postgres:5432/prefect"
    )
    with pytest.raises(SystemExit, match="PREFECT_API_DATABASE_CONNECTION_URL must be"):
        database_dsn({"PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///prefect.db"})


def migrate(port: int, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres",
        "PREFECT_HOME": "/tmp/prefect-home-migrate-test",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.migrate", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_started_before_postgres_it_waits_then_applies_prefects_migrations() -> None:
    if postgres_bindir() is None:
        pytest.fail(MISSING)
    port = free_port()
    process = migrate(port)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    # Postgres comes later, as a new volume's does: once the imports are done and it is waiting.
    deadline = time.monotonic() + 120
    while "does not answer yet" not in "".join(output):
        assert process.poll() is None and time.monotonic() < deadline, "".join(output)
        time.sleep(0.2)
    with throwaway_postgres(port=port) as url:
        assert process.wait(timeout=180) == 0, "".join(output)
        reader.join(5)
        assert "Migrations succeeded" in "".join(output)
        connection = psycopg2.connect(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT version_num FROM alembic_version")
                revision = cursor.fetchone()
                cursor.execute(
                    "SELECT count(*) FROM information_schema.tables"
                    " WHERE table_name IN ('flow_run', 'deployment')"
                )
                tables = cursor.fetchone()
        finally:
            connection.close()
        assert revision and revision[0]
        assert tables == (2,)


def test_without_postgres_it_fails_naming_what_did_not_answer() -> None:
    port = free_port()
    process = migrate(port, "--timeout", "2")
    out, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert f"Postgres at 127.0.0.1:{port} did not answer within 2 s" in out
