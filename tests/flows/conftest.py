"""Fixtures of the flow tests: one real Prefect test server per session, a DuckDB warehouse per test,
a local HTTP server standing in for a shop's REST API, and a throwaway real Postgres cluster.

No Docker needed. Postgres comes from Debian's `postgresql` package (initdb/pg_ctl); without it the
SQL tests skip locally but FAIL in CI (CI=true or REQUIRE_DOCKER=1), so CI cannot go green silently.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

# Read by the flows when a run starts: no 10/20/40 s backoffs in tests, and dlt stays offline.
os.environ.setdefault("ELT_RETRY_BACKOFF_SECONDS", "0")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from tests.flows.elt_testkit import DuckWarehouse, read_sample
from tests.support.postgres_cluster import MISSING, postgres_bindir, throwaway_postgres

# --- Prefect -------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _flows_use_the_test_server(prefect_server: None) -> None:
    """Every flow test talks to the session's real Prefect server (tests/conftest.py)."""


# --- Warehouse -----------------------------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DuckWarehouse:
    """A fresh DuckDB warehouse and DATA_DIR for one test (WAREHOUSE=duckdb)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "warehouse.duckdb"
    monkeypatch.setenv("WAREHOUSE", "duckdb")
    monkeypatch.setenv("DUCKDB_PATH", str(path))
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    for name in ("DEMO_DATA_DIR", "CREDENTIALS_AWS_SECRET_BLOCK", "REST_API_TOKEN", "SQL_SOURCE_URL"):
        monkeypatch.delenv(name, raising=False)
    return DuckWarehouse(path=path, data_dir=data_dir)


# --- REST API fixture server ---------------------------------------------------------------------


@dataclass
class FakeShopApi:
    """State of the fixture API: records per resource, request log, injected faults."""

    records: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    token: str | None = None
    fail_with: list[int] = field(default_factory=list)  # statuses returned by the next requests
    base_url: str = ""

    def upsert(self, resource: str, rows: list[dict[str, Any]]) -> None:
        table = self.records.setdefault(resource, {})
        for row in rows:
            table[row.get("id", object())] = row

    def load_sample_day(self, day: int) -> None:
        for table in ("customers", "orders", "payments"):
            self.upsert(table, read_sample(day, table))


def _handler(api: FakeShopApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            resource = url.path.strip("/").split("/")[-1]
            api.requests.append((resource, params))
            if api.fail_with:
                self._send(api.fail_with.pop(0), {"error": "injected"})
                return
            if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                self._send(401, {"error": "unauthorized"})
                return
            if resource not in api.records:
                self._send(404, {"error": f"no resource {resource}"})
                return
            since = params.get("updated_since", "")
            rows = [r for r in api.records[resource].values() if str(r.get("updated_at") or "") >= since]
            rows.sort(key=lambda r: (str(r.get("updated_at")), str(r.get("id"))))
            page, per_page = int(params.get("page", 1)), int(params.get("per_page", 100))
            self._send(200, {"data": rows[(page - 1) * per_page : page * per_page]})

    return Handler


@pytest.fixture
def shop_api() -> Iterator[FakeShopApi]:
    api = FakeShopApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


# --- Postgres ------------------------------------------------------------------------------------


def _must_not_skip() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_DOCKER") == "1"


@dataclass
class Postgres:
    url: str

    def execute(self, sql: str) -> None:
        import psycopg2

        con = psycopg2.connect(self.url)
        try:
            with con, con.cursor() as cur:
                cur.execute(sql)
        finally:
            con.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway Postgres cluster in a temp dir (Debian's postgresql package), or the one in
    TEST_POSTGRES_URL when set (e.g. a running stack's)."""
    if os.environ.get("TEST_POSTGRES_URL"):
        yield Postgres(os.environ["TEST_POSTGRES_URL"])
        return
    if postgres_bindir() is None:
        message = f"{MISSING} (or set TEST_POSTGRES_URL)"
        if _must_not_skip():
            pytest.fail(message)
        pytest.skip(message)
    with throwaway_postgres() as url:
        yield Postgres(url)
