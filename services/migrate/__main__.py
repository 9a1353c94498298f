"""prefect-migrate's command: `python -m services.migrate [--timeout S]`, Prefect's own
`prefect server database upgrade -y`, started beside Postgres instead of after it.

Prefect's CLI and migration code take about as long to import (3-5 s on 2 cores) as a new
Postgres volume takes to initialise. Run as `wait_for postgres -- prefect ...`, the two happened one
after the other on every first start; here the imports come first, then the wait for Postgres to
accept connections (services/database.py), then the upgrade, in this process, through Prefect's CLI
as the command line runs it. The server, started beside this one-shot, waits for its result
(services/server/schema_ready.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from services.database import accepts_queries, database_dsn, postgres_address

UPGRADE = ["prefect", "server", "database", "upgrade", "-y"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.migrate", description=__doc__)
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for Postgres")
    options = parser.parse_args(argv)
    dsn = database_dsn(os.environ)

    # What the upgrade runs, imported while Postgres starts.
    import prefect.cli._app
    import prefect.cli.server
    import prefect.server.database.alembic_commands  # noqa: F401
    from prefect.cli import app

    if error := accepts_queries(dsn, options.timeout, log=say):
        sys.exit(
            f"migrate: Postgres at {postgres_address(dsn)} did not answer within {options.timeout:.0f} s "
            f"({error})"
        )
    sys.argv = UPGRADE
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    else:
        code = 0
    # Done and said so: no interpreter teardown (a second of Prefect's and SQLAlchemy's on 2 cores),
    # which would hold the server back for as long.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def say(message: str) -> None:
    print(f"migrate: {message}", flush=True)


if __name__ == "__main__":
    main()
