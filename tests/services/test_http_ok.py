"""services/http_ok.sh, the healthcheck of the server and the workers, against a real HTTP server:
200 is healthy; another status, a closed port or a server that never answers is not."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import REPO

PROBE = REPO / "services" / "http_ok.sh"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/ready": 200, "/starting": 503}.get(self.path, 404)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: the probe hangs up once it has the status line of an answer that is not 200."""


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def probe(port: int, path: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(PROBE), str(port), path], capture_output=True, timeout=30)


def test_a_200_answer_is_healthy(port: int) -> None:
    assert probe(port, "/ready").returncode == 0


@pytest.mark.parametrize("path", ["/starting", "/missing"])
def test_any_other_status_is_unhealthy(port: int, path: str) -> None:
    assert probe(port, path).returncode != 0


def test_a_closed_port_is_unhealthy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert probe(closed, "/ready").returncode != 0


def test_a_server_that_never_answers_is_unhealthy_within_its_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        started = time.monotonic()
        result = probe(sock.getsockname()[1], "/ready")
    assert result.returncode != 0
    assert time.monotonic() - started < 10  # read -t 4; Docker's own timeout is 5 s


def test_with_patience_a_server_that_comes_up_during_the_probe_is_healthy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    server = Server(("127.0.0.1", free), Handler, bind_and_activate=False)

    def come_up() -> None:
        server.server_bind()
        server.server_activate()
        server.serve_forever()

    threading.Timer(1.5, come_up).start()
    try:
        started = time.monotonic()
        patient = subprocess.run([str(PROBE), str(free), "/ready", "4"], capture_output=True, timeout=30)
        assert patient.returncode == 0, patient.stderr
        assert 1.4 < time.monotonic() - started < 4.5
    finally:
        server.shutdown()
        server.server_close()


def test_with_patience_a_server_that_stays_unready_is_unhealthy_once_it_runs_out(port: int) -> None:
    started = time.monotonic()
    assert subprocess.run([str(PROBE), str(port), "/starting", "2"], capture_output=True).returncode != 0
    assert 1.9 < time.monotonic() - started < 4
