"""scripts/lib/status.py: judging the collected facts (healthy, and each way the platform breaks),
reading a certificate's expiry, and the failed-backup alert. The facts of a real stack, healthy and
broken, are checked end to end in tests/e2e/test_operations.py."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scripts.lib.status import Limits, der_not_after, evaluate, render, tls_days_left
from tests.support import REPO


def run(name: str, state: str, **ages: float | None) -> dict[str, Any]:
    """A run as the probe describes it; ages in seconds: since_state, due (expected start), started."""
    return {
        "name": name,
        "id": name,
        "deployment": "elt/daily",
        "state": state,
        "state_age_seconds": ages.get("since_state"),
        "expected_start_age_seconds": ages.get("due"),
        "start_age_seconds": ages.get("started"),
    }


def service(
    state: str = "running", health: str = "healthy", exit_code: int = 0, one_shot: bool = False
) -> dict:
    return {
        "state": state,
        "health": health,
        "exit_code": exit_code,
        "one_shot": one_shot,
        "healthcheck": not one_shot,
    }


HEALTHY: dict[str, Any] = {
    "project": "demo",
    "time": "2026-11-25T12:00:00+00:00",
    "services": {
        "postgres": service(),
        "prefect-server": service(),
        "prefect-worker": service(),
        "prefect-migrate": service("exited", "", one_shot=True),
        "prefect-init": service("exited", "", one_shot=True),
    },
    "commit": "v0.2.0",
    "database": {
        "version": "15.18 (Debian)",
        "bytes": 14_000_000,
        "alembic_revision": "d4a7e1c93f52",
        "tables": [{"name": "events", "bytes": 5_000_000}],
    },
    "probe": {
        "prefect_version": "3.8.8",
        "server_version": "3.8.8",
        "api_error": None,
        "work_pool": {"name": "docker-pool", "status": "READY", "paused": False},
        "workers": [{"name": "demo-worker", "status": "ONLINE", "heartbeat_age_seconds": 7.0}],
        "runs_24h": {"Completed": 5},
        "late_runs": {"count": 1, "runs": [run("just-due", "Late", due=20)]},
        "unfinished_runs": [run("busy", "Running", since_state=600, started=600)],
        "last_runs": [
            {"deployment": "elt/daily", "last_run": run("r1", "Completed", started=3600)},
            {"deployment": "elt/rest", "last_run": None},
        ],
        "data_volume": {
            "bytes": 4_000_000,
            "disk_free_bytes": 50 << 30,
            "disk_total_bytes": 100 << 30,
            "restore_leftovers": [],
        },
    },
    "backup": {
        "newest": "/b/demo-backup-20261125T030000Z.tar.gz",
        "age_seconds": 9 * 3600,
        "bytes": 2e5,
        "count": 3,
    },
    "stack_age_seconds": 30 * 86400,
    "tls": {"mode": "off"},
}


def judged(facts: dict[str, Any], limits: Limits | None = None) -> dict[str, tuple[str, str]]:
    return {
        c.name: (c.level, c.summary + " | " + "; ".join(c.details))
        for c in evaluate(facts, limits or Limits())
    }


def broken(change: Any) -> dict[str, Any]:
    facts = copy.deepcopy(HEALTHY)
    change(facts)
    return facts


def test_a_healthy_platform_has_no_failure() -> None:
    checks = judged(HEALTHY)
    assert [name for name, (level, _) in checks.items() if level == "fail"] == []
    assert checks["worker"][0] == "ok" and "demo-worker ONLINE" in checks["worker"][1]
    assert checks["late/stuck"] == ("ok", "none (1 run(s) in progress) | ")  # a run due 20 s ago is not late
    assert "elt/rest: never ran" in checks["deployments"][1]
    lines = render(evaluate(HEALTHY, Limits()), HEALTHY)
    assert len(lines) <= 25 and any("backup" in line and "9.0 h ago" in line for line in lines)


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [
        (
            "services",
            lambda f: f["services"]["prefect-worker"].update(state="exited", exit_code=137),
            "prefect-worker exited",
        ),
        (
            "services",
            lambda f: f["services"]["prefect-server"].update(health="unhealthy"),
            "prefect-server unhealthy",
        ),
        (
            "services",
            lambda f: f["services"]["prefect-init"].update(exit_code=1),
            "prefect-init exited (exit 1)",
        ),
        (
            "services",
            lambda f: (
                f["services"].pop("postgres")
                and f["services"].update(
                    postgres={
                        "state": "missing",
                        "health": "",
                        "exit_code": None,
                        "one_shot": False,
                        "healthcheck": True,
                    }
                )
            ),
            "postgres missing",
        ),
        (
            "worker",
            lambda f: f["probe"]["workers"][0].update(status="OFFLINE", heartbeat_age_seconds=400),
            "no worker polls docker-pool",
        ),
        ("worker", lambda f: f["probe"]["workers"][0].update(heartbeat_age_seconds=300), "no worker polls"),
        ("worker", lambda f: f["probe"].update(workers=[]), "none ever registered"),
        ("worker", lambda f: f["probe"]["work_pool"].update(paused=True), "paused"),
        ("worker", lambda f: f["probe"].update(api_error="ConnectError: refused"), "the API does not answer"),
        (
            "late/stuck",
            lambda f: f["probe"]["late_runs"]["runs"].append(run("stalled", "Late", due=900)),
            "stalled Late, due 15 min ago",
        ),
        (
            "late/stuck",
            lambda f: f["probe"]["unfinished_runs"].append(
                run("forever", "Running", since_state=20000, started=20000)
            ),
            "forever Running, started 5.6 h ago",
        ),
        (
            "late/stuck",
            lambda f: f["probe"]["unfinished_runs"].append(run("limbo", "Pending", since_state=1000)),
            "limbo Pending since 17 min ago",
        ),
        ("database", lambda f: f.update(database=None), "Postgres is not running"),
        ("disk", lambda f: f["probe"]["data_volume"].update(disk_free_bytes=3 << 30), "disk almost full"),
        (
            "disk",
            lambda f: f["probe"]["data_volume"].update(disk_free_bytes=900 << 20, disk_total_bytes=2 << 30),
            "disk almost full",
        ),
        ("backup", lambda f: f["backup"].update(age_seconds=30 * 3600), "last good backup is too old"),
        (
            "backup",
            lambda f: f["backup"].update(newest=None, age_seconds=None, bytes=None, count=0),
            "no backup in BACKUP_DIR",
        ),
        ("tls", lambda f: f.update(tls={"mode": "acme", "days_left": 3.2}), "expires in 3 days"),
        (
            "tls",
            lambda f: f.update(tls={"mode": "internal", "error": "connection refused"}),
            "no certificate could be read",
        ),
    ],
)
def test_each_breakage_fails_its_check_with_the_reason(name: str, change: Any, reason: str) -> None:
    level, summary = judged(broken(change))[name]
    assert level == "fail" and reason in summary, summary


def test_warnings_do_not_fail_the_status() -> None:
    facts = broken(lambda f: f["probe"].update(runs_24h={"Completed": 3, "Failed": 2}))
    facts["probe"]["data_volume"].update(disk_free_bytes=10 << 30, restore_leftovers=[".pre-restore-2026"])
    checks = judged(facts)
    assert checks["runs"] == ("warn", "last 24 h: 3 Completed, 2 Failed (2 failed: see the UI) | ")
    assert checks["disk"][0] == "warn" and ".pre-restore-2026" in checks["disk"][1]
    assert not [n for n, (level, _) in checks.items() if level == "fail"]


def test_backup_age_limits() -> None:
    young = broken(
        lambda f: (
            f.update(stack_age_seconds=3600) or f["backup"].update(newest=None, age_seconds=None, count=0)
        )
    )
    assert judged(young)["backup"][0] == "ok"  # a new stack has had no chance to back up yet
    old = broken(lambda f: f["backup"].update(age_seconds=30 * 3600))
    assert judged(old, Limits(backup_max_age_hours=48))["backup"][0] == "ok"
    assert judged(old, Limits(backup_max_age_hours=0))["backup"][0] == "info"  # not checked


def test_stuck_threshold_is_a_setting() -> None:
    facts = broken(
        lambda f: f["probe"]["unfinished_runs"].append(
            run("long", "Running", since_state=3 * 3600, started=3 * 3600)
        )
    )
    assert judged(facts, Limits(stuck_run_hours=4))["late/stuck"][0] == "ok"
    assert judged(facts, Limits(stuck_run_hours=2))["late/stuck"][0] == "fail"


def certificate(not_after: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prefect.example.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def test_certificate_expiry_is_read_from_der() -> None:
    # 2051 and later: GeneralizedTime instead of UTCTime.
    for not_after in (
        dt.datetime(2027, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        dt.datetime(2051, 1, 1, tzinfo=dt.UTC),
    ):
        cert, _ = certificate(not_after)
        assert der_not_after(cert.public_bytes(serialization.Encoding.DER)) == not_after


def test_certificate_expiry_of_a_live_tls_server(tmp_path: Path) -> None:
    not_after = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=5)
    cert, key = certificate(not_after)
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "key.pem").write_bytes(pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_once() -> None:
        connection, _ = listener.accept()
        with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    days = tls_days_left("127.0.0.1", listener.getsockname()[1], "prefect.example.test")
    listener.close()
    assert 4.9 < days <= 5.0


class Sink(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        Sink.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Sink.received.clear()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_a_failed_scheduled_backup_posts_to_the_webhook(tmp_path: Path, webhook: str) -> None:
    # A checkout whose stack cannot be reached (no compose file): the backup fails at its first step.
    shutil.copytree(REPO / "scripts", tmp_path / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".env").write_text(f"COMPOSE_PROJECT_NAME=alerttest\nALERT_WEBHOOK_URL={webhook}\n")
    result = subprocess.run(
        [str(tmp_path / "scripts" / "backup"), "--notify-on-failure"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "backup: FAILED" in result.stderr
    assert result.stdout == ""  # no path: nothing was written
    assert len(Sink.received) == 1 and "backup of alerttest" in Sink.received[0]["text"], result.stderr
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").glob("*.tar.gz"))
    # Without the flag (a person at the terminal) nothing is posted.
    subprocess.run([str(tmp_path / "scripts" / "backup")], capture_output=True, timeout=120)
    assert len(Sink.received) == 1
