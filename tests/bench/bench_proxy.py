"""Proxy benchmark: the proxy's idle memory, and what it adds to one API call.

Starts a fresh copy of the checkout as its own compose project with TLS_MODE=internal, lets it
idle, reads `docker stats`, then times the same authenticated API call (GET /api/admin/version)
`--calls` times directly on the server's plain loopback port and through the proxy over HTTPS,
both on kept-alive connections from this host, interleaved in blocks so drift hits both alike.
Also times the login throttle middleware alone (in-process, against a trivial ASGI app). Prints
figures, asserts nothing: `uv run python tests/bench/bench_proxy.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.server.login_throttle import LoginThrottle
from tests.bench.bench_platform import memory
from tests.support.proxy import ProxyStack
from tests.support.stack import copy_checkout


def timed(call: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    call().raise_for_status()
    return (time.perf_counter() - started) * 1000


def summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[round(0.95 * (len(ordered) - 1))]
    return f"{label:<24} p50 {statistics.median(ordered):6.2f} ms   p95 {p95:6.2f} ms   n={len(ordered)}"


def middleware_cost(calls: int = 20_000) -> tuple[float, float]:
    """Microseconds per request: a trivial ASGI app alone, and wrapped in the login throttle."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run(target: Any) -> float:
        scope = {"type": "http", "path": "/api/flows/filter", "headers": [(b"authorization", b"Basic x")]}
        scope["client"] = ("203.0.113.5", 1)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        async def send(message: dict[str, Any]) -> None:
            return None

        started = time.perf_counter()
        for _ in range(calls):
            await target(scope, receive, send)
        return (time.perf_counter() - started) / calls * 1e6

    return asyncio.run(run(app)), asyncio.run(run(LoginThrottle(app, proxy_host=None)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=int, default=60)
    args = parser.parse_args()
    bare, wrapped = middleware_cost()
    print(
        f"login throttle middleware alone: {wrapped - bare:.1f} us per request ({bare:.1f} -> {wrapped:.1f})"
    )
    with tempfile.TemporaryDirectory(prefix="pp-bench-proxy-") as tmp:
        root = Path(tmp)
        copy_checkout(root)
        stack = ProxyStack(root, project=f"ppbench{int(time.time()) % 100000}", tls_mode="internal")
        try:
            stack.up()
            time.sleep(args.idle_seconds)
            print(f"idle memory after {args.idle_seconds} s:")
            for name, mib in memory(stack):
                print(f"  {name:<28} {mib:7.1f} MiB")
            ca = stack.caddy_root(root / "caddy-root.crt")
            with stack.client() as direct, stack.https(ca, auth=stack.credentials) as proxied:
                calls = {
                    "direct (plain, loopback)": lambda: direct.get("/admin/version"),
                    "through the proxy (TLS)": lambda: proxied.get("/api/admin/version"),
                }
                times: dict[str, list[float]] = {label: [] for label in calls}
                for call in calls.values():  # warm-up: connections, TLS session, caches
                    for _ in range(50):
                        timed(call)
                for _ in range(args.calls // 100):
                    for label, call in calls.items():
                        times[label] += [timed(call) for _ in range(100)]
            for label, values in times.items():
                print(summary(label, values))
            added = statistics.median(times["through the proxy (TLS)"]) - statistics.median(
                times["direct (plain, loopback)"]
            )
            print(f"added by the proxy (p50): {added:.2f} ms per API call")
        finally:
            stack.down()


if __name__ == "__main__":
    main()
