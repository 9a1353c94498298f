"""The login throttle around Prefect's app, driven through ASGI like uvicorn drives it."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest

from services.server import login_throttle
from services.server.login_throttle import LoginThrottle

GOOD = "Basic " + base64.b64encode(b"admin:right").decode()
BAD = "Basic " + base64.b64encode(b"admin:wrong").decode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def prefect_like(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """401 unless the right credentials, like Prefect's API; UI paths need none."""
    if scope["type"] == "lifespan":
        await send({"type": "lifespan.startup.complete"})
        return
    headers = dict(scope["headers"])
    ok = not scope["path"].startswith("/api") or headers.get(b"authorization") == GOOD.encode()
    await send({"type": "http.response.start", "status": 200 if ok else 401, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def call(
    app: LoginThrottle,
    auth: str | None = None,
    peer: str = "198.51.100.7",
    path: str = "/api/flows/filter",
    forwarded: str | None = None,
) -> tuple[int, dict[bytes, bytes]]:
    headers = [(b"authorization", auth.encode())] if auth else []
    if forwarded:
        headers.append((b"x-forwarded-for", forwarded.encode()))
    scope = {"type": "http", "path": path, "headers": headers, "client": (peer, 40000)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0].get("headers", []))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> LoginThrottle:
    return LoginThrottle(prefect_like, max_failures=10, window=60, proxy_host="localhost", clock=clock)


def test_ten_failures_in_a_minute_block_that_address_only(app: LoginThrottle, clock: Clock) -> None:
    for _ in range(10):
        assert call(app, BAD)[0] == 401
        clock.now += 5
    status, headers = call(app, GOOD)  # even the right password: the guesser must learn nothing
    assert status == 429
    assert 1 <= int(headers[b"retry-after"]) <= 60
    assert call(app, GOOD, peer="203.0.113.9")[0] == 200  # another address is not slowed down
    assert call(app, path="/dashboard")[0] == 200  # the UI's pages still load (login form shows)


def test_the_block_ends_after_the_window(app: LoginThrottle, clock: Clock) -> None:
    for _ in range(10):
        call(app, BAD)
    assert call(app, GOOD)[0] == 429
    clock.now += 61
    assert call(app, GOOD)[0] == 200
    assert call(app, BAD)[0] == 401  # a fresh count starts


def test_failures_spread_beyond_the_window_are_not_throttled(app: LoginThrottle, clock: Clock) -> None:
    for _ in range(30):
        assert call(app, BAD)[0] == 401
        clock.now += 7  # 10 failures take 63 s > 60 s


def test_requests_without_credentials_do_not_count(app: LoginThrottle) -> None:
    for _ in range(20):
        assert call(app)[0] == 401  # e.g. the UI's first calls before its login form
    assert call(app, GOOD)[0] == 200


def test_the_block_is_logged_once_with_the_address(
    app: LoginThrottle, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="prefect.server.login_throttle"):
        for _ in range(15):
            call(app, BAD, peer="192.0.2.44")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "192.0.2.44" in lines[0] and "429" in lines[0], lines


def test_forwarded_address_is_trusted_from_the_proxy_only(app: LoginThrottle) -> None:
    # Through the proxy (localhost stands in for the `proxy` service): clients are told apart.
    for _ in range(10):
        call(app, BAD, peer="127.0.0.1", forwarded="203.0.113.1")
    assert call(app, GOOD, peer="127.0.0.1", forwarded="203.0.113.1")[0] == 429
    assert call(app, GOOD, peer="127.0.0.1", forwarded="203.0.113.2")[0] == 200
    # Anyone else writing X-Forwarded-For is counted by their own address: no escape by spoofing.
    for n in range(10):
        call(app, BAD, peer="198.51.100.20", forwarded=f"10.9.9.{n}")
    assert call(app, GOOD, peer="198.51.100.20", forwarded="10.9.9.99")[0] == 429


def test_without_a_proxy_service_forwarded_headers_are_ignored(clock: Clock) -> None:
    app = LoginThrottle(prefect_like, proxy_host="no-such-host.invalid", clock=clock)
    for n in range(10):
        call(app, BAD, peer="127.0.0.1", forwarded=f"10.0.0.{n}")
    assert call(app, GOOD, peer="127.0.0.1", forwarded="10.0.0.77")[0] == 429


def test_lifespan_reaches_the_app(app: LoginThrottle) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == [{"type": "lifespan.startup.complete"}]  # Prefect's services start from here


def test_bookkeeping_is_bounded(app: LoginThrottle, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_throttle, "MAX_TRACKED_ADDRESSES", 50)
    for n in range(200):
        call(app, BAD, peer=f"10.1.{n // 250}.{n % 250}")
        clock.now += 0.01
    assert len(app.failures) <= 50


def test_settings_from_the_environment() -> None:
    app = LoginThrottle.from_env(
        prefect_like, {"LOGIN_THROTTLE_FAILURES": "3", "LOGIN_THROTTLE_SECONDS": "5"}
    )
    assert (app.max_failures, app.window, app.proxy_host) == (3, 5.0, "proxy")
    with pytest.raises(SystemExit, match="LOGIN_THROTTLE_FAILURES"):
        LoginThrottle.from_env(prefect_like, {"LOGIN_THROTTLE_FAILURES": "ten"})
