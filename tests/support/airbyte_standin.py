"""A local stand-in for the parts of Airbyte's API that flows/airbyte.py calls, recording every call.

Endpoints (as self-managed Airbyte serves them; Cloud serves the same under its own base URL):
``POST /api/v1/applications/token``, ``POST /api/public/v1/jobs``, ``GET /api/public/v1/jobs``,
``GET|DELETE /api/public/v1/jobs/{jobId}``. Each connection has a script: the statuses that
successive GETs of its job return (the last one repeats, so ``["running"]`` is a job that hangs).
``faults`` injects error statuses for the next matching requests. ``on_success`` stands in for
the destination: called with the job when a connection's job first reports ``succeeded`` (e.g. to
write the synced tables into the test's warehouse).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PUBLIC = "/api/public/v1"
TOKEN_PATH = "/api/v1/applications/token"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None
    content_type: str | None


@dataclass
class Job:
    job_id: int
    connection_id: str
    script: list[str]
    rows: int
    bytes: int
    created: datetime
    polls: int = 0
    cancelled: bool = False
    delivered: bool = False  # on_success ran

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.polls == 0:
            return "pending"
        return self.script[min(self.polls, len(self.script)) - 1]

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "jobId": self.job_id,
            "status": self.status,
            "jobType": "sync",
            "connectionId": self.connection_id,
            "startTime": self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastUpdatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.status in ("succeeded", "failed", "cancelled"):
            body.update(duration="PT1M5S", rowsSynced=self.rows, bytesSynced=self.bytes)
        return body


@dataclass
class AirbyteStandin:
    """State of the stand-in; set ``api_token`` or ``client_id``/``client_secret`` to require auth."""

    api_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    token_ttl: int = 180
    scripts: dict[str, list[str]] = field(default_factory=dict)  # connection id -> statuses
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # connection id -> (rows, bytes)
    faults: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path prefix, status)
    calls: list[Call] = field(default_factory=list)
    jobs: dict[int, Job] = field(default_factory=dict)
    issued_tokens: list[str] = field(default_factory=list)
    on_success: dict[str, Callable[[Job], None]] = field(default_factory=dict)  # connection id -> loader
    server_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def api_url(self) -> str:
        return self.server_url + PUBLIC

    def connection(self, connection_id: str, statuses: list[str], rows: int = 1234, size: int = 56789) -> str:
        """Declares a connection whose sync jobs walk through ``statuses``; returns its id."""
        self.scripts[connection_id] = statuses
        self.sizes[connection_id] = (rows, size)
        return connection_id

    def requests(self, method: str | None = None, prefix: str = "") -> list[tuple[str, str]]:
        """(method, path) of the recorded calls, optionally filtered."""
        return [
            (c.method, c.path)
            for c in self.calls
            if (method is None or c.method == method) and c.path.startswith(prefix)
        ]

    # --- request handling (called from the server's threads) ---

    def handle(self, method: str, raw_path: str, headers: Any, raw_body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            body = json.loads(raw_body) if raw_body else None
        except json.JSONDecodeError:
            body = raw_body.decode(errors="replace")
        with self._lock:
            self.calls.append(
                Call(method, url.path, query, body, headers.get("Authorization"), headers.get("Content-Type"))
            )
            for i, (f_method, f_prefix, f_status) in enumerate(self.faults):
                if f_method == method and url.path.startswith(f_prefix):
                    del self.faults[i]
                    return f_status, {"message": "injected fault"}
            if url.path == TOKEN_PATH and method == "POST":
                return self._token(body)
            if not self._authorized(headers.get("Authorization")):
                return 401, {"message": "Unauthorized"}
            return self._jobs(method, url.path, query, body)

    def _token(self, body: Any) -> tuple[int, Any]:
        ok = (
            isinstance(body, dict)
            and self.client_id is not None
            and body.get("client_id") == self.client_id
            and body.get("client_secret") == self.client_secret
        )
        if not ok:
            return 401, {"message": "invalid client credentials"}
        token = secrets.token_hex(8)
        self.issued_tokens.append(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}

    def _authorized(self, header: str | None) -> bool:
        if self.api_token is not None:
            return header == f"Bearer {self.api_token}"
        if self.client_id is not None:
            return header is not None and header.removeprefix("Bearer ") in self.issued_tokens
        return True

    def _jobs(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path == f"{PUBLIC}/jobs" and method == "POST":
            connection_id = (body or {}).get("connectionId")
            if (body or {}).get("jobType") != "sync" or connection_id not in self.scripts:
                return 404, {"message": f"connection {connection_id} not found"}
            if any(
                j.connection_id == connection_id and j.status not in _TERMINAL for j in self.jobs.values()
            ):
                return 409, {"message": "A sync is already running for this connection."}
            rows, size = self.sizes[connection_id]
            job = Job(100 + len(self.jobs), connection_id, self.scripts[connection_id], rows, size, _now())
            self.jobs[job.job_id] = job
            return 200, job.response()
        if path == f"{PUBLIC}/jobs" and method == "GET":
            since = query.get("createdAtStart", "")
            found = [
                j.response()
                for j in self.jobs.values()
                if j.connection_id == query.get("connectionId")
                and j.created.strftime("%Y-%m-%dT%H:%M:%SZ") >= since
            ]
            return 200, {"data": found}
        if path.startswith(f"{PUBLIC}/jobs/"):
            job = self.jobs.get(int(path.rsplit("/", 1)[1]))
            if job is None:
                return 404, {"message": "job not found"}
            if method == "GET":
                if job.status not in _TERMINAL:
                    job.polls += 1
                if job.status == "succeeded" and not job.delivered:
                    job.delivered = True
                    if loader := self.on_success.get(job.connection_id):
                        loader(job)
                return 200, job.response()
            if method == "DELETE":
                job.cancelled = True
                return 200, job.response()
        return 404, {"message": f"no route {method} {path}"}


_TERMINAL = {"succeeded", "failed", "cancelled"}


def _now() -> datetime:
    return datetime.now(UTC)


def _handler(standin: AirbyteStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, body = standin.handle(self.command, self.path, self.headers, self.rfile.read(length))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

    return Handler


@contextmanager
def running_standin(**options: Any) -> Iterator[AirbyteStandin]:
    """Serves an ``AirbyteStandin(**options)`` on a free loopback port for the block."""
    standin = AirbyteStandin(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    standin.server_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
