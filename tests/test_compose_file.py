"""docker-compose.yml as Compose resolves it: secrets required, Postgres private, services guarded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="the docker client is not installed")
LONG_RUNNING = ("postgres", "prefect-server", "prefect-worker")
ONE_SHOT = ("prefect-migrate", "prefect-init", "prefect-deploy")


def compose_config(env_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "test.env"
    env_file.write_text(env_text)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "PREFECT_", "COMPOSE_"))}
    return subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), "config", "--format", "json"],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
    )


def complete_env() -> str:
    text = (REPO / ".env.example").read_text().replace("__GENERATE__", "x" * 32)
    return text.replace("PLATFORM_DIR=\n", f"PLATFORM_DIR={REPO}\n")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = compose_config(complete_env(), tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "PREFECT_API_AUTH_STRING", "PLATFORM_DIR"])
def test_a_missing_secret_stops_compose_with_a_clear_message(variable: str, tmp_path: Path) -> None:
    env = "\n".join(line for line in complete_env().splitlines() if not line.startswith(f"{variable}="))
    result = compose_config(env, tmp_path)
    assert result.returncode != 0
    assert variable in result.stderr and ("scripts/up" in result.stderr or ".env" in result.stderr)


def test_postgres_is_private_and_only_the_worker_has_the_docker_socket(config: dict[str, Any]) -> None:
    services = config["services"]
    assert not services["postgres"].get("ports")
    assert [p["published"] for p in services["prefect-server"]["ports"]] == ["4200"]
    assert services["prefect-server"]["ports"][0]["host_ip"] == "127.0.0.1"
    with_socket = [
        name
        for name, svc in services.items()
        if any(v.get("source") == "/var/run/docker.sock" for v in svc.get("volumes", []))
    ]
    assert with_socket == ["prefect-worker"]


def test_every_service_is_guarded(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in LONG_RUNNING:
        svc = services[name]
        assert svc["healthcheck"]["test"], name
        assert svc["restart"] == "unless-stopped", name
    for name in (*LONG_RUNNING, *ONE_SHOT):
        svc = services[name]
        assert svc["mem_limit"], name
        assert svc["logging"]["options"]["max-size"], name
        assert list(svc["networks"]) == ["platform"], name
    assert config["networks"]["platform"]["name"] == "prefect-platform"
    conditions = {dep: v["condition"] for dep, v in services["prefect-worker"]["depends_on"].items()}
    assert conditions == {
        "prefect-server": "service_healthy",
        "prefect-init": "service_completed_successfully",
        "prefect-deploy": "service_completed_successfully",
    }


def test_long_running_memory_fits_a_2_gib_host(config: dict[str, Any]) -> None:
    limits = sum(int(config["services"][name]["mem_limit"]) for name in LONG_RUNNING)
    assert limits <= 1024 * 1024**2, "long-running services may not claim more than 1 GiB of a 2 GiB host"
