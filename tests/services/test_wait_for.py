"""services/wait_for: one-shots wait a bounded time for what they need, then run, or fail naming it."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from services.wait_for import answers, wait_for, wait_until
from tests.support import REPO

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_port_that_opens_later_is_waited_for() -> None:
    port = free_port()
    listener = socket.socket()

    def open_later() -> None:
        time.sleep(1.5)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Thread(target=open_later, daemon=True).start()
    said: list[str] = []
    started = time.monotonic()
    try:
        assert wait_for(f"127.0.0.1:{port}", 20, log=said.append)
    finally:
        listener.close()
    assert time.monotonic() - started >= 1.5
    assert said == [f"127.0.0.1:{port} does not answer yet; waiting up to 20 s", f"127.0.0.1:{port} answers"]


def test_a_server_error_is_not_an_answer_but_a_refusal_is(web: str) -> None:
    assert not answers(f"{web}/503")  # the server is up but not ready: keep waiting
    assert answers(f"{web}/401") and answers(f"{web}/200")


def test_nothing_answering_fails_naming_the_target_and_runs_nothing(tmp_path: object) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "services.wait_for", f"127.0.0.1:{port}", "--timeout", "1", "--",
         "sh", "-c", "echo ran"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"wait_for: 127.0.0.1:{port} did not answer within 1 s" in result.stderr
    assert "ran" not in result.stdout


def test_the_command_runs_once_the_target_answers(web: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.wait_for", f"{web}/200", "--", "sh", "-c", "echo ran $0", "arg"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ran arg"


def test_a_check_is_retried_until_it_holds_and_the_wait_is_said_once_in_words_of_what_it_saw() -> None:
    seen: list[int] = []

    def third_time() -> bool:
        seen.append(len(seen) + 1)
        return len(seen) >= 3

    said: list[str] = []
    waiting = lambda: f"check {seen[-1]} failed"  # noqa: E731 - asked once, when the wait is said
    assert wait_until(third_time, 10, waiting, said.append, 0.01, done=lambda: f"held at check {seen[-1]}")
    assert said == ["check 1 failed", "held at check 3"]

    said.clear()
    started = time.monotonic()
    assert not wait_until(lambda: False, 0.3, "never", said.append, 0.05, done="unreachable")
    assert 0.3 <= time.monotonic() - started < 5 and said == ["never"]


def test_a_check_that_holds_at_once_says_nothing() -> None:
    said: list[str] = []
    assert wait_until(lambda: True, 0, "waiting", said.append, done="done") and said == []
