"""The server's Postgres database as the one-shots and the server wait for it (asyncpg: both images).

A new volume's Postgres takes a few seconds to initialise, during which its port is closed and then,
for a moment, open but refusing connections ("the database system is starting up"). The migration
and the server are started beside it and wait here, instead of after its healthcheck.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from services.wait_for import wait_until

RETRY_SECONDS = 0.25


def database_dsn(env: Mapping[str, str]) -> str:
    """asyncpg's DSN of the server's database (PREFECT_API_DATABASE_CONNECTION_URL)."""
    url = env.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    if not url.startswith("postgresql"):
        raise SystemExit(
            "PREFECT_API_DATABASE_CONNECTION_URL must be the postgresql+asyncpg:// URL of the server's "
            "database (docker-compose.yml sets it from POSTGRES_PASSWORD)"
        )
    return "postgresql://" + url.split("://", 1)[1]


def postgres_address(dsn: str) -> str:
    """``host:port`` of the DSN's server, for messages."""
    address = urlsplit(dsn)
    return f"{address.hostname}:{address.port or 5432}"


async def query(dsn: str, sql: str) -> object:
    """The first value ``sql`` returns; raises what asyncpg raises (OSError, PostgresError, timeout)."""
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def accepts_queries(dsn: str, timeout: float, log: Callable[[str], None] = print) -> str | None:
    """None once the database answers a query; else the last error, after ``timeout`` seconds.

    Its port closed, or open but refusing connections while Postgres starts: both are waited for.
    """
    import asyncpg

    where = f"Postgres at {postgres_address(dsn)}"
    error = ""

    def answers() -> bool:
        nonlocal error
        try:
            asyncio.run(query(dsn, "SELECT 1"))
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    waiting = f"{where} does not answer yet; waiting up to {timeout:.0f} s"
    if wait_until(answers, timeout, waiting, log, RETRY_SECONDS, done=f"{where} accepts connections"):
        return None
    return error


async def schema_revision(dsn: str) -> str | None:
    """The Alembic revision the database's schema is at; None when it has none yet or cannot say."""
    import asyncpg

    try:
        revision = await query(dsn, "SELECT version_num FROM alembic_version")
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return None
    return str(revision) if revision else None
