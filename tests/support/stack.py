"""A platform stack started from a fresh copy of this checkout, driven like a user would.

The copy gets its own compose project name and host port, so it never touches a developer's
running stack or .env, and `./scripts/up` runs there exactly as on a fresh clone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import REPO
from tests.support.report import announce

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_checkout(dest: Path) -> None:
    """Copies the files git knows of (tracked and new, not ignored): what a clone would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def env_value(env_file: Path, key: str) -> str:
    for line in env_file.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise KeyError(f"{key} not in {env_file}")


@dataclass
class Stack:
    root: Path
    project: str = field(default_factory=lambda: f"ppe2e{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "COMPOSE_PROJECT_NAME": self.project, "PREFECT_HOST_PORT": str(self.port)}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def compose(
        self, *args: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return self.run("docker", "compose", *args, check=check, timeout=timeout)

    def image(self, service: str) -> str:
        """The image a compose service runs, as compose resolves it (project-scoped by default)."""
        config = json.loads(self.compose("config", "--format", "json").stdout)
        return config["services"][service]["image"]

    def up(self) -> subprocess.CompletedProcess[str]:
        # Several stacks start at once in CI (one per test file in parallel): allow a slow start.
        return self.run("./scripts/up", "--timeout", "600")

    def down(self) -> None:
        images = json.loads(self.compose("config", "--format", "json", check=False).stdout or "{}")
        built = {svc["image"] for svc in images.get("services", {}).values() if "build" in svc}
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        # This project's own images (their layers are shared with other stacks' and stay cached).
        subprocess.run(["docker", "image", "rm", *sorted(built)], capture_output=True, check=False)

    def dump_diagnostics(self) -> str:
        ps = self.compose("ps", "-a", check=False).stdout
        logs = self.compose("logs", "--no-color", "--tail", "150", check=False).stdout
        return f"--- docker compose ps ---\n{ps}\n--- docker compose logs ---\n{logs}"

    def client(self, auth: bool = True) -> httpx.Client:
        credentials = env_value(self.root / ".env", "PREFECT_API_AUTH_STRING").split(":", 1) if auth else None
        return httpx.Client(
            base_url=self.api_url,
            auth=tuple(credentials) if credentials else None,
            timeout=30,  # type: ignore[arg-type]
        )


class PrefectApi:
    """The few REST calls the tests need, against the stack's authenticated API."""

    def __init__(self, client: httpx.Client) -> None:
        self.http = client

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        return self.get(f"/deployments/name/{flow}/{name}")

    def trigger(self, flow: str, name: str, parameters: dict[str, Any] | None = None) -> str:
        deployment = self.deployment(flow, name)
        run = self.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters or {}})
        return run["id"]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.get(f"/flow_runs/{run_id}")

    def wait(self, run_id: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in TERMINAL:
                return run
            time.sleep(0.5)
        raise AssertionError(
            f"flow run {run_id} not finished after {timeout}s: {self.flow_run(run_id)['state']}"
        )

    def logs(self, run_id: str) -> list[str]:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        return [entry["message"] for entry in self.post("/logs/filter", body)]

    def logs_with(self, run_id: str, needle: str, timeout: float = 30) -> list[str]:
        """The run's logs once a line containing ``needle`` arrived (logs are shipped in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.logs(run_id)
            if any(needle in line for line in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})

    def count(self, resource: str) -> int:
        return self.post(f"/{resource}/count")

    def switch_off_triggers_of(self, flow: str, name: str) -> None:
        """Disables the automations that run deployment ``flow/name`` (its triggers in prefect.yaml)."""
        deployment = self.deployment(flow, name)["id"]
        for automation in self.post("/automations/filter"):
            if any(action.get("deployment_id") == deployment for action in automation["actions"]):
                self.http.patch(
                    f"/automations/{automation['id']}", json={"enabled": False}
                ).raise_for_status()


@contextlib.contextmanager
def running(stack: Stack, request: Any) -> Iterator[Stack]:
    """``stack`` brought up with ./scripts/up for a test module, its diagnostics printed when the
    start or any test of the module failed, and taken down (volumes and its images) after."""
    stack.started_at = time.time()  # type: ignore[attr-defined]
    try:
        stack.up_result = stack.up()  # type: ignore[attr-defined]
        yield stack
    finally:
        if request.module.__dict__.get("_any_test_failed") or not hasattr(stack, "up_result"):
            announce(stack.dump_diagnostics())
        stack.down()
