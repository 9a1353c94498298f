"""The airbyte flow against a local stand-in of Airbyte's public API (tests/support/airbyte_standin.py):
job outcomes, the timeout and its cancel, transient vs permanent HTTP errors, both auth modes, the hooks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from flows.airbyte import (
    AirbyteClient,
    AirbyteConfigError,
    airbyte_sync,
    airbyte_sync_flow,
    cancel_airbyte_jobs,
    resolve_airbyte_settings,
    run_airbyte_sync,
)
from flows.credentials import MissingCredentialsError
from tests.flows.elt_testkit import artifacts
from tests.support.airbyte_standin import PUBLIC, TOKEN_PATH, AirbyteStandin, running_standin

CONNECTION = "0b6e3a52-5f0e-4d43-9c55-3f1d7d0c9a01"
OTHER = "7f0d2c1e-1111-4a2b-8c3d-4e5f6a7b8c9d"
AIRBYTE_VARS = ("AIRBYTE_API_URL", "AIRBYTE_TOKEN_URL", "AIRBYTE_CLIENT_ID", "AIRBYTE_CLIENT_SECRET")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*AIRBYTE_VARS, "AIRBYTE_API_TOKEN", "CREDENTIALS_AWS_SECRET_BLOCK"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def token_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[AirbyteStandin]:
    """The stand-in requiring a static bearer token, and the flow configured with it."""
    with running_standin(api_token="static-token-123") as standin:
        monkeypatch.setenv("AIRBYTE_API_URL", standin.api_url)
        monkeypatch.setenv("AIRBYTE_API_TOKEN", "static-token-123")
        yield standin


def _sync(connection_id: str = CONNECTION, **options: float):  # type: ignore[no-untyped-def]
    options = {"poll_interval_seconds": 0.05, **options}
    return airbyte_sync_flow(connection_id=connection_id, return_state=True, **options)


def _job_calls(standin: AirbyteStandin) -> list[tuple[str, str]]:
    return standin.requests(prefix=f"{PUBLIC}/jobs")


def test_successful_sync_polls_to_success_and_publishes_the_job(token_standin: AirbyteStandin) -> None:
    token_standin.connection(CONNECTION, ["running", "running", "succeeded"], rows=1234, size=56789)

    state = _sync()

    assert state.is_completed(), state.message
    assert state.result() == {
        "connection_id": CONNECTION,
        "job_id": 100,
        "status": "succeeded",
        "started_at": token_standin.jobs[100].response()["startTime"],
        "duration_seconds": 65.0,  # Airbyte's own PT1M5S
        "rows_synced": 1234,
        "bytes_synced": 56789,
    }
    assert _job_calls(token_standin) == [("POST", f"{PUBLIC}/jobs")] + [("GET", f"{PUBLIC}/jobs/100")] * 3
    assert token_standin.calls[0].body == {"connectionId": CONNECTION, "jobType": "sync"}
    assert {c.authorization for c in token_standin.calls} == {"Bearer static-token-123"}
    assert token_standin.requests(prefix=TOKEN_PATH) == []
    artifact = artifacts(state.state_details.flow_run_id)[f"airbyte-sync-{CONNECTION}"].data
    for line in (
        "| job id | 100 |",
        "| status | **succeeded** |",
        "| rows synced | 1,234 |",
        "| duration | 65.0 s |",
    ):
        assert line in artifact, artifact
    assert "| bytes synced | 56,789 |" in artifact


def test_client_credentials_get_a_token_renew_it_and_never_log_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 1 s token lifetime: a job polled for ~1.5 s needs the token renewed on the way.
    with running_standin(client_id="app-id", client_secret="s3cr3t-value", token_ttl=1) as standin:
        monkeypatch.setenv("AIRBYTE_API_URL", standin.server_url)  # bare server URL: path appended
        monkeypatch.setenv("AIRBYTE_CLIENT_ID", "app-id")
        monkeypatch.setenv("AIRBYTE_CLIENT_SECRET", "s3cr3t-value")
        standin.connection(CONNECTION, ["running"] * 15 + ["succeeded"])

        state = _sync(poll_interval_seconds=0.1)

    assert state.is_completed(), state.message
    token_calls = [c for c in standin.calls if c.path == TOKEN_PATH]
    assert len(token_calls) >= 2, "the 1 s token should have been renewed"
    assert token_calls[0].content_type == "application/json"
    assert token_calls[0].body == {
        "client_id": "app-id",
        "client_secret": "s3cr3t-value",
        "grant-type": "client_credentials",
    }
    job_calls = [c for c in standin.calls if c.path.startswith(f"{PUBLIC}/jobs")]
    assert {c.authorization for c in job_calls} <= {f"Bearer {t}" for t in standin.issued_tokens}
    assert len({c.authorization for c in job_calls}) >= 2
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    text = "\n".join(log.message for log in logs)
    assert "client-credentials auth" in text
    assert "s3cr3t-value" not in text
    assert not any(t in text for t in standin.issued_tokens)


def test_failed_job_fails_the_run_naming_the_job_and_its_status(token_standin: AirbyteStandin) -> None:
    token_standin.connection(CONNECTION, ["running", "failed"])

    state = _sync()

    assert state.is_failed()
    assert f"Airbyte sync job 100 of connection {CONNECTION} ended with status failed" in state.message
    assert ("DELETE", f"{PUBLIC}/jobs/100") not in _job_calls(token_standin)
    artifact = artifacts(state.state_details.flow_run_id)[f"airbyte-sync-{CONNECTION}"].data
    assert "| status | **failed** |" in artifact


def test_job_hanging_past_the_timeout_is_cancelled_and_the_run_fails(token_standin: AirbyteStandin) -> None:
    token_standin.connection(CONNECTION, ["running"])

    state = _sync(timeout_seconds=1, poll_interval_seconds=0.2)

    assert state.is_failed()
    assert "still running after timeout_seconds=1: timed out" in state.message
    assert "it was cancelled in Airbyte" in state.message
    assert token_standin.requests("DELETE") == [("DELETE", f"{PUBLIC}/jobs/100")]
    assert token_standin.jobs[100].cancelled
    # Polled until the deadline, not beyond: at most ~1 s / 0.2 s polls.
    assert 3 <= len(token_standin.requests("GET", f"{PUBLIC}/jobs/100")) <= 7


def test_job_cancelled_in_airbyte_fails_the_run(token_standin: AirbyteStandin) -> None:
    token_standin.connection(CONNECTION, ["running", "cancelled"])

    state = _sync()

    assert state.is_failed()
    assert "job 100" in state.message and "was cancelled in Airbyte" in state.message
    assert token_standin.requests("DELETE") == []


def test_transient_503s_are_retried_per_request(token_standin: AirbyteStandin) -> None:
    token_standin.connection(CONNECTION, ["running", "succeeded"])
    token_standin.faults += [("POST", f"{PUBLIC}/jobs", 503), ("GET", f"{PUBLIC}/jobs/100", 503)]

    state = _sync()

    assert state.is_completed(), state.message
    # The 503 POST is sent again (one job created), the 503 GET too; no second sync.
    assert _job_calls(token_standin) == [("POST", f"{PUBLIC}/jobs")] * 2 + [("GET", f"{PUBLIC}/jobs/100")] * 3
    assert list(token_standin.jobs) == [100]


def test_a_401_is_not_retried_and_says_which_setting(
    token_standin: AirbyteStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_standin.connection(CONNECTION, ["succeeded"])
    monkeypatch.setenv("AIRBYTE_API_TOKEN", "wrong-token")

    state = _sync()

    assert state.is_failed()
    assert "POST /jobs answered 401" in state.message and "AIRBYTE_API_TOKEN" in state.message
    assert _job_calls(token_standin) == [("POST", f"{PUBLIC}/jobs")]
    assert "wrong-token" not in state.message


def test_refused_client_credentials_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_standin(client_id="app-id", client_secret="right") as standin:
        monkeypatch.setenv("AIRBYTE_API_URL", standin.api_url)
        monkeypatch.setenv("AIRBYTE_CLIENT_ID", "app-id")
        monkeypatch.setenv("AIRBYTE_CLIENT_SECRET", "wrong-secret")
        standin.connection(CONNECTION, ["succeeded"])

        state = _sync()

    assert state.is_failed()
    assert "applications/token answered 401" in state.message
    assert "AIRBYTE_CLIENT_SECRET" in state.message and "wrong-secret" not in state.message
    assert standin.requests() == [("POST", TOKEN_PATH)]


def test_bad_input_fails_before_any_request(
    token_standin: AirbyteStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AirbyteConfigError, match="connection_id must be an Airbyte connection's UUID"):
        run_airbyte_sync("my-connection")
    with pytest.raises(
        AirbyteConfigError, match="timeout_seconds and poll_interval_seconds must be positive"
    ):
        run_airbyte_sync(CONNECTION, timeout_seconds=0)
    monkeypatch.setenv("AIRBYTE_API_URL", "airbyte:8000")
    with pytest.raises(AirbyteConfigError, match="AIRBYTE_API_URL must be an http"):
        run_airbyte_sync(CONNECTION)
    monkeypatch.delenv("AIRBYTE_API_TOKEN")
    monkeypatch.setenv("AIRBYTE_API_URL", token_standin.api_url)
    with pytest.raises(MissingCredentialsError, match="AIRBYTE_CLIENT_ID, AIRBYTE_CLIENT_SECRET"):
        run_airbyte_sync(CONNECTION)
    monkeypatch.setenv("AIRBYTE_CLIENT_ID", "app-id")
    with pytest.raises(MissingCredentialsError, match="set AIRBYTE_CLIENT_SECRET"):
        run_airbyte_sync(CONNECTION)
    assert token_standin.calls == []


def test_urls_for_cloud_and_self_managed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRBYTE_API_TOKEN", "tok-SECRET")
    cloud = resolve_airbyte_settings()
    assert (cloud.api_url, cloud.token_url) == (
        "https://api.airbyte.com/v1",
        "https://api.airbyte.com/v1/applications/token",
    )
    monkeypatch.setenv("AIRBYTE_API_URL", "http://airbyte.internal:8000/api/public/v1/")
    managed = resolve_airbyte_settings()
    assert (managed.api_url, managed.token_url) == (
        "http://airbyte.internal:8000/api/public/v1",
        "http://airbyte.internal:8000/api/v1/applications/token",
    )
    assert managed.api_token == "tok-SECRET" and "tok-SECRET" not in repr(managed)


def test_an_exception_leaving_the_task_cancels_the_job(token_standin: AirbyteStandin) -> None:
    """Prefect's own task timeout interrupts the wait: the task's `finally` cancels the job."""
    token_standin.connection(CONNECTION, ["running"])

    @flow
    def interrupted() -> None:
        airbyte_sync.with_options(timeout_seconds=1)(CONNECTION, 600, 0.1)

    state = interrupted(return_state=True)

    assert state.is_failed()
    assert token_standin.requests("DELETE") == [("DELETE", f"{PUBLIC}/jobs/100")]
    assert token_standin.jobs[100].cancelled


def test_hook_in_another_process_cancels_the_connections_running_job(token_standin: AirbyteStandin) -> None:
    """The on_cancellation/on_crashed hook as a runner process calls it: nothing registered in memory,
    so it finds the connection's running job created since the run started, and cancels only that."""
    token_standin.connection(CONNECTION, ["running"])
    token_standin.connection(OTHER, ["running"])
    with AirbyteClient(resolve_airbyte_settings()) as client:
        ours = client.start_sync(CONNECTION)["jobId"]
        theirs = client.start_sync(OTHER)["jobId"]
    flow_run = SimpleNamespace(
        id=uuid.uuid4(),
        parameters={"connection_id": CONNECTION},
        start_time=datetime.now(UTC) - timedelta(minutes=1),
    )

    cancel_airbyte_jobs(None, flow_run, None)

    assert token_standin.requests("DELETE") == [("DELETE", f"{PUBLIC}/jobs/{ours}")]
    assert token_standin.jobs[ours].cancelled and not token_standin.jobs[theirs].cancelled
    # A flow whose parameters nest the connection (elt's source model) is found too.
    nested_run = SimpleNamespace(
        id=uuid.uuid4(), parameters={"source": {"connection_id": OTHER}}, start_time=flow_run.start_time
    )
    cancel_airbyte_jobs(None, nested_run, None)
    assert token_standin.jobs[theirs].cancelled
    # Best effort: an unreachable Airbyte is logged, never raised.
    token_standin.faults += [("GET", f"{PUBLIC}/jobs", 400)]
    cancel_airbyte_jobs(None, flow_run, None)
