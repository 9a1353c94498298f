"""The server starts beside prefect-migrate and opens its port once the schema is this Prefect's.

Compose starts the server as soon as the migration one-shot has started (not when it has ended), so
the server's imports and app (5-6 s on 2 cores) overlap the migration instead of following it. The
server then waits here until the database's Alembic revision is the head of this Prefect's
migrations (services/ops/schema.py reads them from the files): only then does it start its
background services and answer. A schema that stays elsewhere (a failed migration, a newer
Prefect's) is named after WAIT_SECONDS and the server starts anyway, as it would have without the
wait; a `docker compose restart` finds the schema current at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from services.database import RETRY_SECONDS, database_dsn, schema_revision
from services.ops.schema import compare, postgres_revisions
from services.wait_for import wait_until

WAIT_SECONDS = 300.0


def _wait(dsn: str, head: list[str], timeout: float, log: Callable[[str], None]) -> bool:
    ours = head[0] if head else "?"
    revision: str | None = None

    def current() -> bool:
        nonlocal revision
        revision = asyncio.run(schema_revision(dsn))
        return compare(revision, head) == "current"

    if wait_until(
        current,
        timeout,
        lambda: (
            f"waiting for prefect-migrate: the database's schema is at {revision or 'nothing yet'}, "
            f"this Prefect's at {ours}"
        ),
        log,
        RETRY_SECONDS * 2,
        done=lambda: f"the database's schema is at {revision}: starting",
    ):
        return True
    log(
        f"the database's schema is still at {revision or 'nothing'} after {timeout:.0f} s, not at this "
        f"Prefect's {ours}: starting anyway (`docker compose logs prefect-migrate`)"
    )
    return False


def wait_for_schema(
    env: Mapping[str, str], timeout: float = WAIT_SECONDS, log: Callable[[str], None] = print
) -> bool:
    """True once the schema is current; False when ``timeout`` passed first (the server starts anyway).

    Only for what the stack runs: a Postgres database that prefect-migrate upgrades. A server that
    migrates on start itself, or on SQLite, starts at once.
    """
    url = env.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    migrates_itself = env.get("PREFECT_SERVER_DATABASE_MIGRATE_ON_START", "true").lower() in ("true", "1")
    if migrates_itself or not url.startswith("postgresql"):
        return True
    return _wait(database_dsn(env), postgres_revisions(), timeout, log)
