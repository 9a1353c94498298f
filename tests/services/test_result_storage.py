"""services/init/result_storage.py against the real Prefect test server and S3 emulated by moto on
loopback: with RESULTS_S3_URI the init makes an S3Bucket block the server's default result storage,
and a result one flow run writes there is read back by a later run (separate processes, no local
copy); without it results go back to local storage."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from prefect import get_client

from services.init.result_storage import BLOCK_NAME, ensure_result_storage, parse_s3_uri

# The session's real Prefect server (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("prefect_server")
BUCKET = "platform-results-test"
FLOW = """\
import sys
import uuid

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE


@task(persist_result=True, cache_policy=INPUTS + TASK_SOURCE)
def draw(seed: str) -> str:
    return uuid.uuid4().hex  # a new value unless the persisted one is read back


@flow(persist_result=True)
def results_check(seed: str) -> str:
    return draw(seed)


if __name__ == "__main__":
    print("RESULT=" + results_check(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 on a loopback port, with the bucket; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )


def keys(endpoint: str, prefix: str) -> list[str]:
    listed = client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture
def flow_run(tmp_path: Path, s3: str):  # type: ignore[no-untyped-def]
    """Runs the results_check flow in a new process, as a flow-run container would (the AWS
    settings it gets from .env); returns what the flow returned."""
    from prefect.settings import PREFECT_API_URL

    script = tmp_path / "results_check.py"
    script.write_text(FLOW)
    local = tmp_path / "local-results"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_"))},
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(local),
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3,
    }

    def run(seed: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), seed], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return next(line for line in done.stdout.splitlines() if line.startswith("RESULT=")).split("=", 1)[1]

    run.local = local  # type: ignore[attr-defined]
    return run


def server_default() -> str | None:
    with get_client(sync_client=True) as prefect:
        block_id = prefect.read_server_default_result_storage().default_result_storage_block_id
        return None if block_id is None else prefect.read_block_document(block_id).name


def test_results_persist_in_s3_and_a_later_run_reads_them_back(
    flow_run, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RESULTS_S3_URI", f"s3://{BUCKET}/prefect-results/")
    with get_client(sync_client=True) as prefect:
        ensure_result_storage(prefect)
        ensure_result_storage(prefect)  # idempotent
    assert server_default() == BLOCK_NAME

    first = flow_run("seed-1")
    stored = keys(s3, "prefect-results/")
    assert len(stored) >= 2, stored  # the task's result (with its cache key) and the flow's
    assert not flow_run.local.exists() or not any(flow_run.local.iterdir()), "nothing may stay local"

    assert flow_run("seed-1") == first, "the later run must read the persisted result back"
    assert flow_run("seed-2") != first

    for key in keys(s3, "prefect-results/"):
        client(s3).delete_object(Bucket=BUCKET, Key=key)
    assert flow_run("seed-1") != first, "with the S3 objects gone the value is computed again"


def test_without_the_setting_results_go_back_to_the_data_volume(
    flow_run, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RESULTS_S3_URI", f"s3://{BUCKET}/elsewhere")
    with get_client(sync_client=True) as prefect:
        ensure_result_storage(prefect)
        monkeypatch.setenv("RESULTS_S3_URI", "")
        ensure_result_storage(prefect)
    assert server_default() is None

    flow_run("seed-local")
    assert keys(s3, "elsewhere/") == []
    assert any(flow_run.local.iterdir()), "results must be on local storage"


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [("s3://my-bucket/prefect/results/", "my-bucket", "prefect/results"), ("s3://b.c-d", "b.c-d", "")],
)
def test_uri_is_split_into_bucket_and_folder(uri: str, bucket: str, prefix: str) -> None:
    assert parse_s3_uri(uri) == (bucket, prefix)


@pytest.mark.parametrize(
    "uri", ["my-bucket/prefix", "s3://My_Bucket/x", "s3://", "https://s3.amazonaws.com/b"]
)
def test_a_malformed_uri_stops_the_init_naming_the_setting(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESULTS_S3_URI", uri)
    with pytest.raises(SystemExit, match="RESULTS_S3_URI"), get_client(sync_client=True) as prefect:
        ensure_result_storage(prefect)
