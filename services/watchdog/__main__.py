"""python -m services.watchdog: every WATCHDOG_SECONDS, start again this project's long-running
services that were killed (see services/watchdog/__init__.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from services.watchdog.docker_api import DockerApi, DockerError
from services.watchdog.revive import Reviver, services_from

# The stack's long-running services (the proxy only exists in TLS modes; absent is fine).
DEFAULT_SERVICES = ("postgres", "prefect-server", "prefect-worker", "proxy")
# Touched after every pass (a tmpfs in compose); the healthcheck reads its age.
ALIVE_FILE = Path(os.environ.get("WATCHDOG_ALIVE_FILE") or "/run/watchdog/alive")


def log(message: str) -> None:
    print(f"watchdog: {message}", flush=True)


def main() -> None:
    project = os.environ.get("COMPOSE_PROJECT_NAME", "").strip()
    if not project:
        sys.exit("watchdog: COMPOSE_PROJECT_NAME is not set; it comes from .env (see .env.example)")
    interval = float(os.environ.get("WATCHDOG_SECONDS") or 5)
    services = services_from(os.environ.get("WATCHDOG_SERVICES", ""), DEFAULT_SERVICES)
    reviver = Reviver(DockerApi(), project, services, log=log)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # compose stop: exit at once, cleanly
    log(f"watching {', '.join(sorted(services))} of project {project} every {interval:.0f} s")
    while True:
        try:
            reviver.revive()
            ALIVE_FILE.touch()
        except DockerError as exc:
            log(str(exc))
        time.sleep(interval)


if __name__ == "__main__":
    main()
