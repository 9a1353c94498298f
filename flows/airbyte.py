"""Airbyte syncs (flow ``airbyte``, deployment ``airbyte/sync``): triggers a sync of an Airbyte
connection through Airbyte's public API and waits for it.

The same code serves Airbyte Cloud and self-managed Airbyte; only the URL differs. Settings are read
with ``CredentialResolver`` (the AwsSecret block, then the environment), at every run:

- ``AIRBYTE_API_URL``: the public API's base URL, ``https://api.airbyte.com/v1`` for Cloud (the
  default) or ``<airbyte url>/api/public/v1`` for self-managed (a bare ``http://host:8000`` gets
  ``/api/public/v1`` appended).
- ``AIRBYTE_CLIENT_ID`` + ``AIRBYTE_CLIENT_SECRET``: an Airbyte application's credentials, exchanged
  for a short-lived access token (``POST <server>/api/v1/applications/token``, renewed before it
  expires); or ``AIRBYTE_API_TOKEN``, a static bearer token. ``AIRBYTE_TOKEN_URL`` overrides the
  token endpoint if a proxy moves it.

A sync is ``POST /jobs {connectionId, jobType: sync}``, then ``GET /jobs/{jobId}`` every
``poll_interval_seconds`` until the job succeeds, fails or is cancelled. Each HTTP call is retried on
transient errors only (network errors, 429, 5xx: ``flows.retry.is_transient``); a 401/403/404/409 fails
at once with what to fix. The task does not retry as a whole: that would start a second sync.

Cancellation (``DELETE /jobs/{jobId}``), from the surest path to the most hopeful:

1. The task's own deadline (``timeout_seconds``): a job still running then is cancelled and the run
   fails with a timeout message.
2. A ``finally`` in the task: any exception leaving the task while the job runs (Prefect's task
   timeout, SIGTERM turned into an exception by the engine, Ctrl-C) cancels the job first.
3. The flow's ``on_cancellation``/``on_crashed`` hooks, best effort: they run only where Prefect runs
   hooks (a local or ``prefect serve`` run, a process worker's runner). In this stack a cancelled
   run's container is killed with SIGKILL by the Docker worker, so neither 2 nor 3 run there and
   the Airbyte job goes on until it ends or is cancelled in Airbyte's UI.

The client is a small httpx one rather than the ``airbyte-api`` SDK (1.0.1): the SDK's
client-credentials hook posts the token request form-encoded, which Airbyte's token endpoint
rejects (airbyte-api-python-sdk issues 112 and 126), its default token URL is wrong for
self-managed Airbyte (issue 106), and its token failures are bare ``Exception``s without a status,
so a 503 could not be told from a 401; for three job endpoints it also imports ~740 generated
model modules (1.5 s). httpx is already installed with Prefect.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from flows.credentials import CredentialResolver, MissingCredentialsError
from flows.retry import is_transient

CLOUD_API_URL = "https://api.airbyte.com/v1"
PUBLIC_API_PATH = "/api/public/v1"
DEFAULT_TIMEOUT_SECONDS = 3600
DEFAULT_POLL_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 30.0
HTTP_ATTEMPTS = 4  # per request: the first try and three retries of a transient error
RETRY_BACKOFF_SECONDS = float(os.environ.get("ELT_RETRY_BACKOFF_SECONDS", "10"))
# Renew the access token this long before it expires (Cloud's last 3 to 15 minutes).
TOKEN_RENEW_MARGIN_SECONDS = 30.0
RUNNING_STATUSES = {"pending", "running", "incomplete"}  # "incomplete": an attempt failed, Airbyte retries
TERMINAL_STATUSES = {"succeeded", "failed", "cancelled"}
STATUS_HINTS = {
    401: "the credentials were refused: check AIRBYTE_CLIENT_ID/AIRBYTE_CLIENT_SECRET or AIRBYTE_API_TOKEN",
    403: "the Airbyte application's user may not run this connection: grant it access to the workspace",
    404: "not found: check the connection id and AIRBYTE_API_URL",
    409: "a sync of this connection is already running in Airbyte: wait for it or cancel it there",
}


class AirbyteConfigError(ValueError):
    """The Airbyte settings or parameters are invalid; the message says which and how to fix it."""


class AirbyteApiError(RuntimeError):
    """Airbyte's API answered with an error status (kept on ``.response`` for retry decisions)."""

    def __init__(self, message: str, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response


class AirbyteJobError(RuntimeError):
    """The sync job ended without succeeding (failed, cancelled in Airbyte, or timed out)."""

    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(message)
        self.job = job


@dataclass(frozen=True)
class AirbyteSettings:
    api_url: str  # public API base, no trailing slash
    token_url: str
    # Secrets: never logged (repr suppressed).
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)

    @property
    def auth(self) -> str:
        return "client-credentials" if self.client_id else "token"


def _default_token_url(api_url: str) -> str:
    # Self-managed: <server>/api/public/v1 -> <server>/api/v1/applications/token. Cloud's API
    # (https://api.airbyte.com/v1) serves the token endpoint under its own base.
    if api_url.endswith(PUBLIC_API_PATH):
        return api_url[: -len(PUBLIC_API_PATH)] + "/api/v1/applications/token"
    return api_url + "/applications/token"


def resolve_airbyte_settings(resolver: CredentialResolver | None = None) -> AirbyteSettings:
    """Reads the AIRBYTE_* settings; raises naming what is missing or malformed (never a value)."""
    resolver = resolver or CredentialResolver()
    api_url = (resolver.get("AIRBYTE_API_URL") or CLOUD_API_URL).strip().rstrip("/")
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AirbyteConfigError(
            f"AIRBYTE_API_URL must be an http(s) URL such as {CLOUD_API_URL} (Cloud) or "
            f"http://airbyte.internal:8000{PUBLIC_API_PATH} (self-managed), got {api_url!r}."
        )
    if parts.path in ("", "/"):
        api_url += PUBLIC_API_PATH  # a self-managed server's URL as shown in the browser
    token_url = (resolver.get("AIRBYTE_TOKEN_URL") or _default_token_url(api_url)).strip()
    client_id, client_secret = resolver.get("AIRBYTE_CLIENT_ID"), resolver.get("AIRBYTE_CLIENT_SECRET")
    api_token = resolver.get("AIRBYTE_API_TOKEN")
    if bool(client_id) != bool(client_secret):
        missing = "AIRBYTE_CLIENT_SECRET" if client_id else "AIRBYTE_CLIENT_ID"
        raise MissingCredentialsError(
            "Airbyte client credentials need both AIRBYTE_CLIENT_ID and AIRBYTE_CLIENT_SECRET: "
            f"set {missing} (an Airbyte application's: User settings > Applications in Airbyte's UI)."
        )
    if not client_id and not api_token:
        resolver.require(
            ["AIRBYTE_CLIENT_ID", "AIRBYTE_CLIENT_SECRET"], "Airbyte syncs (or AIRBYTE_API_TOKEN)"
        )
    return AirbyteSettings(
        api_url=api_url,
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        api_token=None if client_id else api_token,
    )


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, AirbyteApiError):
        status = exc.response.status_code
        return status == 429 or status >= 500
    return isinstance(exc, httpx.TransportError) or is_transient(exc)


class AirbyteClient:
    """The four job endpoints of Airbyte's public API, with token handling and transient retries."""

    def __init__(self, settings: AirbyteSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.Client(timeout=HTTP_TIMEOUT_SECONDS)
        self._token: str | None = settings.api_token
        self._token_expires = float("inf")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirbyteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _access_token(self) -> str:
        if self.settings.api_token:
            return self.settings.api_token
        if self._token is None or time.monotonic() >= self._token_expires:
            response = self._send_retrying(
                "POST",
                self.settings.token_url,
                json={
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret,
                    "grant-type": "client_credentials",
                },
                what="POST applications/token",
            )
            body = response.json()
            token = body.get("access_token") if isinstance(body, dict) else None
            if not token:
                raise AirbyteApiError(
                    f"Airbyte's token endpoint {self.settings.token_url} answered without an access_token: "
                    "check AIRBYTE_API_URL / AIRBYTE_TOKEN_URL point at Airbyte.",
                    response,
                )
            lifetime = float(body.get("expires_in") or 180)
            self._token = str(token)
            self._token_expires = time.monotonic() + lifetime - min(TOKEN_RENEW_MARGIN_SECONDS, lifetime / 2)
        return self._token

    def _send_retrying(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            try:
                response = self._http.request(method, url, **kwargs)
                if response.status_code >= 400:
                    raise AirbyteApiError(self._error_message(what, response), response)
                return response
            except Exception as exc:
                if attempt == HTTP_ATTEMPTS or not _transient(exc):
                    raise
                delay = RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)
                _logger().warning(
                    "Airbyte API %s failed (%s); retry %d of %d in %.0f s",
                    what,
                    exc,
                    attempt,
                    HTTP_ATTEMPTS - 1,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _error_message(self, what: str, response: httpx.Response) -> str:
        message = f"Airbyte API {what} answered {response.status_code} {response.reason_phrase}"
        hint = STATUS_HINTS.get(response.status_code)
        if "applications/token" not in what:  # a token error's body could echo what was sent
            detail = response.text.strip().replace("\n", " ")[:300]
            if detail:
                message += f": {detail}"
        return message + (f" ({hint})" if hint else "")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        what = f"{method} {path}"
        for renewed in (False, True):
            headers = {"Authorization": f"Bearer {self._access_token()}", "Accept": "application/json"}
            try:
                response = self._send_retrying(
                    method, self.settings.api_url + path, headers=headers, what=what, **kwargs
                )
            except AirbyteApiError as exc:
                # An access token can expire early (clock skew, revoked): fetch a new one once.
                if exc.response.status_code == 401 and self.settings.client_id and not renewed:
                    self._token = None
                    continue
                raise
            return response.json() if response.content else {}
        raise AssertionError("unreachable")

    def start_sync(self, connection_id: str) -> dict[str, Any]:
        return self.request("POST", "/jobs", json={"connectionId": connection_id, "jobType": "sync"})

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}")

    def cancel_job(self, job_id: int) -> dict[str, Any]:
        return self.request("DELETE", f"/jobs/{job_id}")

    def list_jobs(self, connection_id: str, created_after: datetime) -> list[dict[str, Any]]:
        params = {
            "connectionId": connection_id,
            "jobType": "sync",
            "createdAtStart": created_after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "limit": 20,
        }
        return list(self.request("GET", "/jobs", params=params).get("data") or [])


def _logger() -> Any:
    try:
        return get_run_logger()
    except Exception:  # outside a run (a hook in a runner process, a plain call)
        import logging

        return logging.getLogger("flows.airbyte")


def validate_connection_id(connection_id: str) -> str:
    try:
        return str(uuid.UUID(str(connection_id).strip()))
    except ValueError:
        raise AirbyteConfigError(
            f"connection_id must be an Airbyte connection's UUID (the id in the connection's URL in "
            f"Airbyte's UI: .../connections/<id>), got {connection_id!r}."
        ) from None


ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$")


def _duration_seconds(job: dict[str, Any]) -> float | None:
    """Airbyte's ISO 8601 ``duration`` (e.g. PT8M42S) in seconds, or None when absent/unparsed."""
    match = ISO_DURATION.match(str(job.get("duration") or ""))
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _summary(job: dict[str, Any], connection_id: str, waited: float) -> dict[str, Any]:
    duration = _duration_seconds(job)
    return {
        "connection_id": connection_id,
        "job_id": job.get("jobId"),
        "status": job.get("status"),
        "started_at": job.get("startTime"),
        "duration_seconds": round(duration if duration is not None else waited, 3),
        "rows_synced": int(job.get("rowsSynced") or 0),
        "bytes_synced": int(job.get("bytesSynced") or 0),
    }


def _artifact(summary: dict[str, Any], api_url: str) -> None:
    rows = [
        ("connection", f"`{summary['connection_id']}`"),
        ("job id", str(summary["job_id"])),
        ("status", f"**{summary['status']}**"),
        ("duration", f"{summary['duration_seconds']:.1f} s"),
        ("rows synced", f"{summary['rows_synced']:,}"),
        ("bytes synced", f"{summary['bytes_synced']:,}"),
        ("Airbyte API", api_url),
    ]
    create_markdown_artifact(
        key=f"airbyte-sync-{summary['connection_id']}",
        markdown="# Airbyte sync\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n",
        description=f"Airbyte sync job {summary['job_id']}: {summary['status']}",
    )


# Jobs this process is waiting for, by flow run id: the flow's hooks cancel them if they run here.
_ACTIVE_JOBS: dict[str, tuple[AirbyteSettings, int]] = {}


@task(name="airbyte_sync", task_run_name="airbyte-sync-{connection_id}", cache_policy=NO_CACHE)
def airbyte_sync(
    connection_id: str,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_interval_seconds: float = DEFAULT_POLL_SECONDS,
) -> dict[str, Any]:
    """Starts a sync of ``connection_id`` and waits for it; returns the job's summary.

    Fails when the job fails, is cancelled in Airbyte, or still runs after ``timeout_seconds``
    (then it is cancelled first). Publishes an ``airbyte-sync-<connection_id>`` artifact either way.
    """
    logger = get_run_logger()
    connection_id = validate_connection_id(connection_id)
    settings = resolve_airbyte_settings()
    logger.info(
        "Airbyte sync of connection %s at %s (%s auth)", connection_id, settings.api_url, settings.auth
    )
    started = time.monotonic()
    deadline = started + timeout_seconds
    flow_run = FlowRunContext.get()
    run_key = str(flow_run.flow_run.id) if flow_run and flow_run.flow_run else None
    job: dict[str, Any] | None = None
    with AirbyteClient(settings) as client:
        try:
            job = client.start_sync(connection_id)
            job_id = int(job["jobId"])
            if run_key:
                _ACTIVE_JOBS[run_key] = (settings, job_id)
            logger.info("Airbyte job %s started (%s)", job_id, job.get("status"))
            status = str(job.get("status"))
            while status not in TERMINAL_STATUSES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    cancelled = _cancel_quietly(client, job_id)
                    if cancelled:
                        job["status"] = "cancelled"
                    raise AirbyteJobError(
                        f"Airbyte sync job {job_id} of connection {connection_id} was still {status} after "
                        f"timeout_seconds={timeout_seconds:g}: timed out, and "
                        + (
                            "it was cancelled in Airbyte. "
                            if cancelled
                            else "cancelling it failed: cancel it in Airbyte's UI. "
                        )
                        + "Raise timeout_seconds if the sync needs longer.",
                        job,
                    )
                time.sleep(min(poll_interval_seconds, remaining))
                job = client.get_job(job_id)
                if str(job.get("status")) != status:
                    logger.info("Airbyte job %s: %s -> %s", job_id, status, job.get("status"))
                status = str(job.get("status"))
            if status != "succeeded":
                how = "was cancelled in Airbyte" if status == "cancelled" else f"ended with status {status}"
                raise AirbyteJobError(
                    f"Airbyte sync job {job_id} of connection {connection_id} {how}: see the job's logs "
                    "in Airbyte (the connection's Timeline).",
                    job,
                )
        finally:
            if run_key:
                _ACTIVE_JOBS.pop(run_key, None)
            if job is not None and str(job.get("status")) in RUNNING_STATUSES:
                # Leaving while the job runs (an exception, Prefect's timeout, SIGTERM): stop it.
                _cancel_quietly(client, int(job["jobId"]))
                job["status"] = "cancelled"
            if job is not None and job.get("jobId") is not None:
                _artifact(_summary(job, connection_id, time.monotonic() - started), settings.api_url)
    summary = _summary(job, connection_id, time.monotonic() - started)
    logger.info(
        "Airbyte job %s succeeded: %s rows, %s bytes",
        summary["job_id"],
        summary["rows_synced"],
        summary["bytes_synced"],
    )
    return summary


def _cancel_quietly(client: AirbyteClient, job_id: int) -> bool:
    """DELETEs the job; True when Airbyte accepted it. Logs instead of raising (a cleanup path)."""
    try:
        client.cancel_job(job_id)
    except Exception as exc:
        _logger().error("Could not cancel Airbyte job %s (%s): cancel it in Airbyte's UI", job_id, exc)
        return False
    _logger().warning("Cancelled Airbyte job %s", job_id)
    return True


def cancel_airbyte_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """on_cancellation/on_crashed hook: best-effort cancel of the run's Airbyte job.

    In the run's own process, the job this run registered. Elsewhere (a runner process), the
    connection's running sync jobs created since the flow run started: Airbyte runs one sync per
    connection at a time, so that is this run's job unless Airbyte's own schedule started one then.
    Never raises.
    """
    logger = _logger()
    try:
        known = _ACTIVE_JOBS.pop(str(flow_run.id), None)
        if known is not None:
            settings, job_id = known
            with AirbyteClient(settings) as client:
                _cancel_quietly(client, job_id)
            return
        # Top-level (this module's flow) or inside a parameter model (e.g. elt's `airbyte` source).
        params = flow_run.parameters or {}
        nested = (v.get("connection_id") for v in params.values() if isinstance(v, dict))
        connection_id = params.get("connection_id") or next((c for c in nested if c), None)
        if not connection_id or flow_run.start_time is None:
            return
        with AirbyteClient(resolve_airbyte_settings()) as client:
            for job in client.list_jobs(validate_connection_id(connection_id), flow_run.start_time):
                if str(job.get("status")) in RUNNING_STATUSES:
                    _cancel_quietly(client, int(job["jobId"]))
    except Exception as exc:
        logger.error("Cancelling the Airbyte job of flow run %s failed: %s", flow_run.id, exc)


def run_airbyte_sync(
    connection_id: str,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_interval_seconds: float = DEFAULT_POLL_SECONDS,
) -> dict[str, Any]:
    """One Airbyte sync as a task of the calling flow: the entry point for other flows (e.g. ``elt``).

    Returns ``{connection_id, job_id, status, started_at, duration_seconds, rows_synced,
    bytes_synced}``; raises ``AirbyteJobError`` when the sync does not succeed. Validates the
    connection id and settings before anything is sent. A calling flow should list
    ``cancel_airbyte_jobs`` in its on_cancellation/on_crashed hooks too.
    """
    connection_id = validate_connection_id(connection_id)
    if timeout_seconds <= 0 or poll_interval_seconds <= 0:
        raise AirbyteConfigError(
            "timeout_seconds and poll_interval_seconds must be positive, got "
            f"{timeout_seconds} and {poll_interval_seconds}."
        )
    resolve_airbyte_settings()  # fail on missing settings before a task run is created
    return airbyte_sync(connection_id, timeout_seconds, poll_interval_seconds)


@flow(
    name="airbyte",
    on_cancellation=[cancel_airbyte_jobs],
    on_crashed=[cancel_airbyte_jobs],
    log_prints=True,
)
def airbyte_sync_flow(
    connection_id: str,
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    poll_interval_seconds: float = DEFAULT_POLL_SECONDS,
) -> dict[str, Any]:
    """Syncs one Airbyte connection (Cloud or self-managed) and waits for the job to finish.

    Args:
        connection_id: the Airbyte connection's UUID (in its URL in Airbyte's UI).
        timeout_seconds: cancel the job and fail when it still runs after this long.
        poll_interval_seconds: seconds between job status checks.
    """
    return run_airbyte_sync(
        connection_id, timeout_seconds=timeout_seconds, poll_interval_seconds=poll_interval_seconds
    )
