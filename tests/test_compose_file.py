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
    assert sorted(with_socket) == ["prefect-worker", "watchdog"]


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
        assert svc["cap_drop"] == ["ALL"], name
        assert svc["security_opt"] == ["no-new-privileges:true"], name
        assert svc["pids_limit"] > 0, name
    # Postgres is on a network of its own: only migrations and the server join it, no flow run.
    users_of_the_database = {name for name, svc in services.items() if "db" in svc.get("networks", {})}
    assert users_of_the_database == {"postgres", "prefect-migrate", "prefect-server"}
    assert config["networks"]["db"]["internal"] is True
    assert config["networks"]["platform"]["name"] == "prefect-platform"
    for name in ("prefect-server", "prefect-worker", "prefect-init", "prefect-migrate", "prefect-deploy"):
        assert services[name]["read_only"] is True, name
    assert services["prefect-worker"]["cap_add"] == ["DAC_READ_SEARCH"]
    conditions = {dep: v["condition"] for dep, v in services["prefect-worker"]["depends_on"].items()}
    assert conditions == {
        "prefect-server": "service_healthy",
        "prefect-init": "service_completed_successfully",
        "prefect-deploy": "service_completed_successfully",
    }


def test_the_watchdog_is_small_hardened_and_off_every_network(config: dict[str, Any]) -> None:
    watchdog = config["services"]["watchdog"]
    assert watchdog["network_mode"] == "none" and not watchdog.get("networks")
    assert int(watchdog["mem_limit"]) <= 64 * 1024**2
    assert watchdog["restart"] == "unless-stopped" and watchdog["healthcheck"]["test"]
    assert watchdog["cap_drop"] == ["ALL"] and not watchdog.get("cap_add")
    assert watchdog["read_only"] is True and watchdog["security_opt"] == ["no-new-privileges:true"]
    # compose stops dependents first: `docker compose stop`/`down` stop the watchdog before these.
    assert {"prefect-worker", "prefect-server", "postgres"} <= set(watchdog["depends_on"])


def test_the_oom_killer_takes_a_flow_run_before_any_service(config: dict[str, Any]) -> None:
    from services.worker.job_policy import OOM_SCORE_ADJ

    scores = {name: svc.get("oom_score_adj", 0) for name, svc in config["services"].items()}
    assert OOM_SCORE_ADJ == 1000 and max(scores.values()) <= 0, scores


def test_long_running_memory_fits_a_2_gib_host(config: dict[str, Any]) -> None:
    limits = sum(int(config["services"][name]["mem_limit"]) for name in LONG_RUNNING)
    assert limits <= 1024 * 1024**2, "long-running services may not claim more than 1 GiB of a 2 GiB host"


def tls_env(mode: str = "internal") -> str:
    """.env as ./scripts/up leaves it for a TLS mode: the `tls` profile on."""
    return (
        complete_env()
        .replace("TLS_MODE=off\n", f"TLS_MODE={mode}\n")
        .replace("PUBLIC_HOSTNAME=\n", "PUBLIC_HOSTNAME=prefect.example.com\n")
        .replace("COMPOSE_PROFILES=server\n", "COMPOSE_PROFILES=server,tls\n")
    )


def test_worker_only_runs_no_server_and_points_every_client_at_the_remote_api(tmp_path: Path) -> None:
    """./scripts/up --worker-only: no `server` profile, PREFECT_API_URL and the key for the clients."""
    env = (
        complete_env()
        .replace("COMPOSE_PROFILES=server\n", "COMPOSE_PROFILES=\n")
        .replace("PREFECT_API_URL=\n", "PREFECT_API_URL=https://prefect.example.com/api\n")
        .replace("PREFECT_API_KEY=\n", "PREFECT_API_KEY=pnu_test\n")
    )
    result = compose_config(env, tmp_path)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert not {"postgres", "prefect-migrate", "prefect-server", "proxy"} & set(services)
    for name in ("prefect-init", "prefect-deploy", "prefect-worker"):
        environment = services[name]["environment"]
        assert environment["PREFECT_API_URL"] == "https://prefect.example.com/api", name
        assert environment["PREFECT_API_KEY"] == "pnu_test", name
        assert services[name]["extra_hosts"] == ["host.docker.internal=host-gateway"], name
        assert services[name]["depends_on"].get("prefect-server", {}).get("required") is not True, name


def test_tls_mode_off_runs_no_proxy_and_the_server_behind_the_login_throttle(config: dict[str, Any]) -> None:
    assert "proxy" not in config["services"]
    server = config["services"]["prefect-server"]
    assert server["command"][:3] == ["python3", "-m", "services.server"]
    assert server["working_dir"] == "/opt/platform"  # where the platform image keeps services/
    assert server["environment"]["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] == "false"
    assert server["environment"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_in_tls_modes_only_the_proxy_is_published_beyond_loopback(tmp_path: Path) -> None:
    result = compose_config(tls_env(), tmp_path)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    published = {
        (name, port["target"], port.get("host_ip", ""))
        for name, svc in services.items()
        for port in svc.get("ports", [])
    }
    beyond_loopback = {(name, target) for name, target, ip in published if ip not in ("127.0.0.1", "::1")}
    assert beyond_loopback == {("proxy", 443), ("proxy", 80)}
    proxy = services["proxy"]
    assert {p["target"]: p["published"] for p in proxy["ports"]} == {443: "443", 80: "80"}
    assert proxy["image"] == "prefect-platform/proxy:local"
    assert proxy["healthcheck"]["test"] and proxy["restart"] == "unless-stopped" and proxy["mem_limit"]
    assert proxy["logging"]["options"]["max-size"] and list(proxy["networks"]) == ["platform"]
    assert proxy["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    # Certificates persist in a volume: a restart does not order new ones.
    assert any(v["type"] == "volume" and v["target"] == "/data" for v in proxy["volumes"])
    assert proxy["environment"]["PUBLIC_HOSTNAME"] == "prefect.example.com"


def test_tls_ports_and_certificate_files_come_from_env(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    env = (
        tls_env("files")
        .replace("HTTPS_HOST_PORT=443\n", "HTTPS_HOST_PORT=8443\n")
        .replace("HTTP_HOST_PORT=80\n", "HTTP_HOST_PORT=8080\n")
        .replace("TLS_CERT_FILE=\n", f"TLS_CERT_FILE={cert}\n")
    )
    result = compose_config(env, tmp_path)
    assert result.returncode == 0, result.stderr
    proxy = json.loads(result.stdout)["services"]["proxy"]
    assert {p["target"]: p["published"] for p in proxy["ports"]} == {443: "8443", 80: "8080"}
    mounts = {v["target"]: v["source"] for v in proxy["volumes"] if v["type"] == "bind"}
    assert mounts == {
        "/run/tls/cert.pem": str(cert),
        "/run/tls/key.pem": "/dev/null",  # not configured: the entrypoint names TLS_KEY_FILE
        "/run/tls/acme-ca-root.pem": "/dev/null",
    }
