"""services/server/schema_ready: the server, started beside the migration, serves once the schema is
this Prefect's; against a real Postgres whose alembic_version the test moves as a migration would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest

from services.ops.schema import postgres_revisions
from services.server.schema_ready import wait_for_schema
from tests.support.postgres_cluster import MISSING, postgres_bindir, throwaway_postgres

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    if postgres_bindir() is None:
        pytest.fail(MISSING)
    with throwaway_postgres() as url:
        yield url


def set_revision(url: str, revision: str | None) -> None:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS alembic_version")
            if revision is not None:
                cursor.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
                cursor.execute("INSERT INTO alembic_version VALUES (%s)", (revision,))
    finally:
        connection.close()


def env(url: str) -> dict[str, str]:
    return {
        "PREFECT_API_DATABASE_CONNECTION_URL": url.replace("postgresql://", "postgresql+asyncpg://"),
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    }


def test_it_waits_through_the_migration_until_the_schema_is_at_head(database: str) -> None:
    head, older = postgres_revisions()[:2]
    set_revision(database, None)  # a new database: no schema yet
    steps = threading.Timer(1.0, set_revision, (database, older))
    done = threading.Timer(2.5, set_revision, (database, head))
    steps.start()
    done.start()
    said: list[str] = []
    started = time.monotonic()
    assert wait_for_schema(env(database), timeout=30, log=said.append)
    assert 2.4 < time.monotonic() - started < 10
    assert "nothing yet" in said[0] and head in said[0]
    assert said[-1] == f"the database's schema is at {head}: starting"


def test_a_schema_that_stays_older_is_named_and_the_server_starts_anyway(database: str) -> None:
    head, older = postgres_revisions()[:2]
    set_revision(database, older)
    said: list[str] = []
    assert not wait_for_schema(env(database), timeout=1.5, log=said.append)
    assert f"still at {older}" in said[-1] and head in said[-1] and "starting anyway" in said[-1]


def test_a_current_schema_or_a_server_that_migrates_itself_starts_at_once(database: str) -> None:
    set_revision(database, postgres_revisions()[0])
    said: list[str] = []
    assert wait_for_schema(env(database), timeout=30, log=said.append)
    assert said == []
    set_revision(database, None)
    assert wait_for_schema({**env(database), "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "true"}, timeout=30)
    assert wait_for_schema({"PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///x.db"}, timeout=30)
