"""The running stack as the host commands see it: settings, `docker compose`, the prefect-ops one-shot.

Standard library only (Python 3.9+: Amazon Linux 2023's system Python). Every Docker call runs in
the checkout with compose's own rules (.env read by compose; a variable exported in the shell wins),
and settings are read the same way here: the environment, then .env, then the default.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from scripts.lib.envfile import EnvFileError, read

ROOT = Path(__file__).resolve().parents[2]
# Services that talk to Postgres or write the data volume: stopped while a restore swaps them.
DATABASE_CLIENTS = ("prefect-worker", "prefect-server")
OPS = "prefect-ops"
FLOW_RUN_FILTER = "label=prefect-platform.role=flow-run"  # services/contract.py FLOW_RUN_LABEL


class OpsError(Exception):
    """A failure the operator must see: the message says what failed and what to do."""


def say(command: str, message: str) -> None:
    """Progress for the operator, on stderr: stdout keeps the one result a caller may capture."""
    print(f"{command}: {message}", file=sys.stderr, flush=True)


@dataclass
class Stack:
    root: Path = ROOT
    _env_file: dict[str, str] | None = field(default=None, repr=False)
    _config: dict[str, Any] | None = field(default=None, repr=False)

    # --- settings -----------------------------------------------------------------------------
    def env_file(self) -> dict[str, str]:
        """.env's settings; none when it is missing (compose then names the secrets it lacks)."""
        if self._env_file is None:
            try:
                self._env_file = read(self.root / ".env")
            except EnvFileError:
                return {}
        return self._env_file

    def reload(self) -> None:
        """Forgets what was read from .env and the compose file (after .env or the checkout changed)."""
        self._env_file = None
        self._config = None

    def setting(self, name: str, default: str = "") -> str:
        """The shell's value, else .env's, else ``default`` (an empty value counts as unset)."""
        return os.environ.get(name) or self.env_file().get(name) or default

    def int_setting(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.setting(name, str(default)).strip()
        try:
            value = int(raw)
        except ValueError:
            raise OpsError(f"{name} must be a whole number, got {raw!r} (see .env.example)") from None
        if value < minimum:
            raise OpsError(f"{name} must be at least {minimum}, got {value} (see .env.example)")
        return value

    @property
    def project(self) -> str:
        return self.setting("COMPOSE_PROJECT_NAME", "prefect-platform")

    def path_setting(self, name: str, default: str) -> Path:
        """A folder setting; relative paths are relative to the checkout."""
        path = Path(self.setting(name, default)).expanduser()
        return path if path.is_absolute() else self.root / path

    # --- docker and compose ---------------------------------------------------------------------
    def run(
        self,
        args: list[str],
        check: bool = True,
        timeout: float | None = None,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args,
            cwd=self.root,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
        out = result.stdout.decode(errors="replace") if isinstance(result.stdout, bytes) else ""
        err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else ""
        done = subprocess.CompletedProcess(result.args, result.returncode, out, err)
        if check and result.returncode != 0:
            raise OpsError(f"`{' '.join(args[:6])}` failed (exit {result.returncode}): {err.strip()[-1500:]}")
        return done

    def compose(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["docker", "compose", *args], **kwargs)

    def config(self) -> dict[str, Any]:
        """The compose file as compose resolves it with this stack's settings (cached)."""
        if self._config is None:
            self._config = json.loads(self.compose("config", "--format", "json").stdout)
        return self._config

    def services(self) -> list[str]:
        """Services compose would start (active profiles only)."""
        return list(self.config()["services"])

    def built_images(self, active_only: bool = False) -> dict[str, str]:
        """Service -> image of the services that run an image built from docker/ (the images an
        upgrade replaces); every profile's unless ``active_only``."""
        if active_only:
            config = self.config()
        else:
            config = json.loads(self.compose("--profile", "*", "config", "--format", "json").stdout)
        services = config["services"]
        # One service builds each image; the others that run it name it (docker-compose.yml).
        built = {svc["image"] for svc in services.values() if svc.get("build")}
        return {name: svc["image"] for name, svc in services.items() if svc.get("image") in built}

    def volume_name(self, key: str) -> str:
        return str(self.config()["volumes"][key].get("name") or f"{self.project}_{key}")

    def project_volumes(self) -> set[str]:
        """Names of this project's volumes that exist (compose labels them, fixed names included)."""
        label = f"label=com.docker.compose.project={self.project}"
        return set(self.run(["docker", "volume", "ls", "-q", "--filter", label]).stdout.split())

    def volume_exists(self, name: str) -> bool:
        return self.run(["docker", "volume", "inspect", name], check=False).returncode == 0

    def image_exists(self, image: str) -> bool:
        return self.run(["docker", "image", "inspect", image], check=False).returncode == 0

    def ps(self) -> dict[str, dict[str, Any]]:
        """Service -> {state, health, exit_code} of this project's containers (stopped ones too)."""
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        rows: list[dict[str, Any]] = []
        if out.startswith("["):
            rows = json.loads(out)
        elif out:
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {
            row["Service"]: {
                "state": row.get("State", ""),
                "health": row.get("Health", ""),
                "exit_code": row.get("ExitCode"),
            }
            for row in rows
        }

    def running(self, services: dict[str, dict[str, Any]] | None = None) -> list[str]:
        return [name for name, row in (services or self.ps()).items() if row["state"] == "running"]

    def flow_run_containers(self) -> list[str]:
        """Names of this stack's flow-run containers that are running now."""
        out = self.run(
            [
                "docker",
                "ps",
                "--filter",
                FLOW_RUN_FILTER,
                "--filter",
                f"network={self.project}",
                "--format",
                "{{.Names}}",
            ]
        ).stdout
        return out.split()

    def busy_flow_runs(self, grace: float = 60) -> list[str]:
        """Flow-run containers still running after up to ``grace`` seconds (one that just finished
        takes a few seconds to exit and be removed)."""
        deadline = time.monotonic() + grace
        while True:
            running = self.flow_run_containers()
            if not running or time.monotonic() > deadline:
                return running
            time.sleep(2)

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        """Starts ``services`` (and what they depend on) and waits until healthy or completed."""
        result = self.compose(
            "up", "-d", "--wait", "--wait-timeout", str(int(timeout)), *services, check=False
        )
        if result.returncode != 0:
            raise OpsError(
                f"{' '.join(services) or 'the stack'} did not become healthy: {result.stderr.strip()[-800:]}"
            )

    # --- prefect-ops and postgres ---------------------------------------------------------------
    def ops_args(self, *args: str) -> list[str]:
        return ["docker", "compose", "run", "--rm", "--no-deps", "-T", OPS, *args]

    def ops(
        self, *args: str, check: bool = True, timeout: float | None = 900
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.ops_args(*args), check=check, timeout=timeout)

    def ops_json(self, *args: str, timeout: float | None = 900) -> Any:
        result = self.ops(*args, timeout=timeout)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise OpsError(f"prefect-ops {args[0]} printed no result: {result.stderr.strip()[-800:]}")
        return json.loads(lines[-1])

    def psql(self, sql: str, database: str = "prefect", timeout: float = 120) -> str:
        psql = ["psql", "-U", "prefect", "-d", database, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql]
        return self.compose("exec", "-T", "postgres", *psql, timeout=timeout).stdout.strip()

    def alembic_revision(self, database: str = "prefect") -> str:
        return self.psql("SELECT version_num FROM alembic_version", database)

    def image_prefect_version(self, image: str) -> str:
        """Prefect's version in an image (package metadata: no import, about a second)."""
        code = "from importlib.metadata import version; print(version('prefect'))"
        return self.run(
            ["docker", "run", "--rm", "--entrypoint", "python3", image, "-c", code]
        ).stdout.strip()

    def git(self, *args: str) -> str:
        result = self.run(["git", *args], check=False)
        return result.stdout.strip() if result.returncode == 0 else ""


@contextmanager
def exclusive(stack: Stack, command: str) -> Iterator[None]:
    """One backup, restore or upgrade at a time on this checkout (a timer may start one)."""
    lock_path = stack.root / ".ops.lock"
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OpsError(
                f"another backup, restore or upgrade is running on this checkout ({lock_path} is locked); "
                "wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ui_url(stack: Stack) -> str:
    """Where the UI is, as ./scripts/up prints it."""
    if stack.setting("TLS_MODE", "off") != "off" and stack.setting("PUBLIC_HOSTNAME"):
        port = stack.setting("HTTPS_HOST_PORT", "443")
        return f"https://{stack.setting('PUBLIC_HOSTNAME')}" + ("" if port == "443" else f":{port}")
    bind = stack.setting("PREFECT_BIND_ADDRESS", "127.0.0.1")
    host = "localhost" if bind in ("", "0.0.0.0", "127.0.0.1") else bind  # noqa: S104 - compared, not bound
    return f"http://{host}:{stack.setting('PREFECT_HOST_PORT', '4200')}"


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"
