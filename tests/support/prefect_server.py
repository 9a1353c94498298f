"""A real Prefect server in a subprocess, for benchmarks that run flows in fresh processes the way
flow-run containers do (pytest's session server lives in the test process and cannot serve them)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.support import REPO

# The stack server's settings of how it records what flow runs send; a benchmark's server takes
# them from docker-compose.yml, so it measures what the stack runs.
RECORDING = ("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_", "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_")


def stack_recording_settings() -> dict[str, str]:
    """docker-compose.yml's prefect-server settings named by RECORDING."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    environment = compose["services"]["prefect-server"]["environment"]
    return {key: str(value) for key, value in environment.items() if key.startswith(RECORDING)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 180, database_url: str | None = None) -> Iterator[str]:
    """Starts `prefect server start`; yields the API URL. Its database: SQLite under ``home``, or
    the Postgres database at ``database_url`` (postgresql://...), as the stack's server uses."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        **stack_recording_settings(),
    }
    env.pop("PREFECT_API_URL", None)
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url.replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
    home.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=home,  # not a checkout's `.env`: Prefect's settings would read it
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):  # noqa: S310 - local http URL
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the Prefect server did not start within {timeout:.0f} s") from None
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
