"""A front for a stack's API on an address containers reach, optionally standing in for Prefect Cloud.

Worker-only tests need the API of stack A (published on the host's loopback) to be reachable from
stack B's containers: this listens on the Docker bridge's gateway address (what
`host.docker.internal` resolves to with `host-gateway`) and forwards each connection to A.

With ``api_key`` it stands in for Prefect Cloud's authentication: a request must carry
`Authorization: Bearer <api_key>` (health probes and websocket upgrades excepted, see below) or it
gets a 401 and is recorded in ``rejected``; an accepted one reaches A with A's basic-auth string.
Each forwarded request is sent with `Connection: close`, so every request on the wire is checked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

OPEN_PATHS = ("/api/health", "/api/ready")


@dataclass
class ApiFront:
    listen_host: str
    upstream_port: int
    api_key: str | None = None
    auth_string: str | None = None
    port: int = 0
    accepted: int = 0
    rejected: list[str] = field(default_factory=list)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    def _rewrite(self, head: bytes) -> bytes | None:
        """The request head to send upstream, or None when the request is refused."""
        lines = head.decode("latin-1").split("\r\n")
        request_line, headers = lines[0], [h for h in lines[1:] if h]
        method, path = [*request_line.split(" "), "", ""][:2]
        values = {h.split(":", 1)[0].strip().lower(): h.split(":", 1)[1].strip() for h in headers if ":" in h}
        if self.api_key is None:
            return head
        is_open = method == "GET" and path.split("?")[0] in OPEN_PATHS
        upgrade = values.get("upgrade", "").lower() == "websocket"
        # Prefect picks its Cloud events client (bearer header) by Cloud's own URL, which this is
        # not: its events websocket here carries no credential, so upgrades are let through.
        if not (is_open or upgrade) and values.get("authorization") != f"Bearer {self.api_key}":
            self.rejected.append(
                f"{request_line} ({values.get('authorization', 'no Authorization')[:12]}...)"
            )
            return None
        self.accepted += 0 if upgrade else 1
        kept = [
            h for h in headers if h.split(":", 1)[0].strip().lower() not in ("authorization", "connection")
        ]
        token = base64.b64encode((self.auth_string or "").encode()).decode()
        kept.append(f"Authorization: Basic {token}")
        kept.append("Connection: Upgrade" if upgrade else "Connection: close")
        return ("\r\n".join([request_line, *kept]) + "\r\n\r\n").encode("latin-1")

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            client_writer.close()
            return
        upstream_head = self._rewrite(head)
        if upstream_head is None:
            body = b'{"exception_message": "Unauthorized"}'
            client_writer.write(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            with contextlib.suppress(ConnectionError):
                await client_writer.drain()
            client_writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        upstream_writer.write(upstream_head)
        # The upstream's side decides when the exchange ends (it closes after the response).
        to_upstream = asyncio.ensure_future(self._pipe(client_reader, upstream_writer))
        await self._pipe(upstream_reader, client_writer)
        to_upstream.cancel()

    @contextlib.contextmanager
    def running(self) -> Iterator[ApiFront]:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        server_box: list[asyncio.base_events.Server] = []

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, self.listen_host, 0)
            self.port = server.sockets[0].getsockname()[1]
            server_box.append(server)
            started.set()

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
        started.wait(10)
        try:
            yield self
        finally:
            server_box[0].close()
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
