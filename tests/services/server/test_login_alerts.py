"""Failed logins are visible: each one logged with its address, a burst alerted on the webhook."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from services.server import login_alerts
from services.server.login_throttle import LoginThrottle
from tests.services.server.test_login_throttle import BAD, Clock, prefect_like


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


async def fail_logins(app: LoginThrottle, times: int, peer: str) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(times):
        scope = {"type": "http", "path": "/api/flows/filter", "client": (peer, 1),
                 "headers": [(b"authorization", BAD.encode())]}  # fmt: skip
        await app(scope, receive, send)
    await asyncio.gather(*login_alerts._pending)


def test_each_failure_is_logged_and_a_burst_alerts_once(
    webhook: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = webhook
    monkeypatch.setenv("ALERT_WEBHOOK_URL", url)
    app = LoginThrottle(prefect_like, max_failures=3, window=60, proxy_host=None, clock=Clock())
    with caplog.at_level(logging.INFO, logger="prefect.server.login_throttle"):
        asyncio.run(fail_logins(app, 3, "198.51.100.7"))
    failures = [r.getMessage() for r in caplog.records if "failed authentication from" in r.getMessage()]
    assert failures == ["failed authentication from 198.51.100.7"] * 3
    assert len(received) == 1
    assert "3 failed logins from 198.51.100.7 within 60 s" in received[0]["text"]


def test_no_webhook_means_no_alert_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    app = LoginThrottle(prefect_like, max_failures=2, window=60, proxy_host=None, clock=Clock())
    asyncio.run(fail_logins(app, 2, "198.51.100.8"))
    assert not login_alerts._pending
