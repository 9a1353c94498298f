"""Throttled logins: an ASGI middleware around Prefect's server app.

An address whose requests failed authentication (HTTP 401 to a request that carried an
Authorization header) `max_failures` times within `window` seconds gets 429 for every API request
for `window` seconds, and one warning line names it. The decision is Prefect's own 401, so the
rules of what needs auth stay Prefect's; the middleware only counts. Other addresses are not
affected: the bookkeeping is a dict lookup per request, in the server's event loop.

Behind the proxy every request comes from the proxy's address, so the client address is the one
Caddy puts in X-Forwarded-For, trusted only from the peer that `proxy_host` resolves to. The
worker and flow runs talk to the server directly with the right credentials: they never fail,
so they are never throttled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from services.server.login_alerts import alert_blocked

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("prefect.server.login_throttle")

# Bounds the bookkeeping if many addresses fail (each address keeps at most max_failures times).
MAX_TRACKED_ADDRESSES = 10_000
# How often an unknown peer sending X-Forwarded-For may trigger a new lookup of the proxy's address.
PROXY_LOOKUP_INTERVAL = 10.0


class LoginThrottle:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_failures: int = 10,
        window: float = 60.0,
        proxy_host: str | None = "proxy",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0:
            raise ValueError("max_failures must be >= 1 and window > 0")
        self.app = app
        self.max_failures = max_failures
        self.window = window
        self.proxy_host = proxy_host
        self.clock = clock
        self.failures: dict[str, deque[float]] = {}
        self.blocked_until: dict[str, float] = {}
        self.proxy_addresses: frozenset[str] = frozenset()
        self.proxy_looked_up_at = -PROXY_LOOKUP_INTERVAL

    @classmethod
    def from_env(cls, app: ASGIApp, env: MutableMapping[str, str] = os.environ) -> LoginThrottle:
        """Settings from the environment: LOGIN_THROTTLE_FAILURES, LOGIN_THROTTLE_SECONDS, PROXY_HOST."""
        try:
            failures = int(env.get("LOGIN_THROTTLE_FAILURES") or 10)
            window = float(env.get("LOGIN_THROTTLE_SECONDS") or 60)
        except ValueError as error:
            raise SystemExit(
                f"LOGIN_THROTTLE_FAILURES and LOGIN_THROTTLE_SECONDS must be numbers: {error}"
            ) from None
        return cls(app, max_failures=failures, window=window, proxy_host=env.get("PROXY_HOST", "proxy"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Lifespan (Prefect's background services) and the UI's static files pass straight through.
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            await self.app(scope, receive, send)
            return
        address = await self.client_address(scope)
        now = self.clock()
        retry_after = self.blocked_until.get(address, 0.0) - now
        if retry_after > 0:
            await self.too_many(send, retry_after)
            return
        statuses: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if statuses and statuses[0] == 401 and any(name == b"authorization" for name, _ in scope["headers"]):
            self.record_failure(address, self.clock())

    def record_failure(self, address: str, now: float) -> None:
        # Every failure, with its address (the log line has the time): for an operator or fail2ban.
        logger.info("failed authentication from %s", address)
        if address not in self.failures and len(self.failures) >= MAX_TRACKED_ADDRESSES:
            self.forget_old(now)
        times = self.failures.setdefault(address, deque(maxlen=self.max_failures))
        times.append(now)
        if len(times) == self.max_failures and now - times[0] <= self.window:
            self.blocked_until[address] = now + self.window
            times.clear()
            logger.warning(
                "login throttle: %s failed authentication %d times within %g s; answering 429 for %g s",
                address,
                self.max_failures,
                self.window,
                self.window,
            )
            alert_blocked(address, self.max_failures, self.window)

    def forget_old(self, now: float) -> None:
        for address in [a for a, t in self.failures.items() if not t or now - t[-1] > self.window]:
            del self.failures[address]
        for address in [a for a, until in self.blocked_until.items() if until <= now]:
            del self.blocked_until[address]
        while len(self.failures) >= MAX_TRACKED_ADDRESSES:  # still full: drop the oldest entries
            del self.failures[next(iter(self.failures))]

    async def client_address(self, scope: Scope) -> str:
        peer = (scope.get("client") or ("unknown", 0))[0]
        forwarded = next((value for name, value in scope["headers"] if name == b"x-forwarded-for"), None)
        if forwarded is None or not self.proxy_host:
            return peer
        due = self.clock() - self.proxy_looked_up_at >= PROXY_LOOKUP_INTERVAL
        if peer not in self.proxy_addresses and due:
            await self.look_up_proxy()
        if peer not in self.proxy_addresses:
            return peer  # anyone but the proxy could write any X-Forwarded-For
        # Caddy replaces what the client sent with the address it sees, as the last entry.
        return forwarded.decode("latin-1").rsplit(",", 1)[-1].strip() or peer

    async def look_up_proxy(self) -> None:
        self.proxy_looked_up_at = self.clock()
        try:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(self.proxy_host, None, type=socket.SOCK_STREAM)
        except OSError:  # no proxy service (TLS_MODE=off): X-Forwarded-For is never trusted
            self.proxy_addresses = frozenset()
            return
        self.proxy_addresses = frozenset(str(info[4][0]) for info in infos)

    @staticmethod
    async def too_many(send: Send, retry_after: float) -> None:
        seconds = max(1, round(retry_after))
        body = json.dumps(
            {"exception_message": f"Too many failed logins from your address; try again in {seconds} s"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(seconds).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
