"""flows/dbt_outputs.py: after a successful dbt build, the docs page with the lineage (raw tables ->
models -> the ML step's exposure) on the data volume, the build's artifacts copied to the server's
remote result storage (S3 in moto on loopback, as RESULTS_S3_URI sets it up), and the run's artifact."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from prefect import get_client
from prefect.settings import PREFECT_UI_URL, temporary_settings

from flows.dbt_outputs import docs_url
from flows.elt import elt
from services.init.result_storage import ensure_result_storage
from tests.flows.elt_testkit import DuckWarehouse, artifacts

BUCKET = "dbt-artifacts-test"


@pytest.fixture
def s3_results(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """moto's S3 on loopback as the server's default result storage (what the init does with
    RESULTS_S3_URI), reverted afterwards; yields a boto3 client of it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "RESULTS_S3_URI": f"s3://{BUCKET}/platform/",
    }.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    try:
        with get_client(sync_client=True) as client:
            ensure_result_storage(client)
        yield s3
    finally:
        monkeypatch.setenv("RESULTS_S3_URI", "")
        with get_client(sync_client=True) as client:
            ensure_result_storage(client)
        server.stop()


def embedded(html: str, artifact: str) -> dict:
    """The manifest or catalog that ``dbt docs generate --static`` wrote into its page."""
    start = html.index('{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/' + artifact)
    return json.JSONDecoder().raw_decode(html, start)[0]


def test_a_build_publishes_its_lineage_page_and_artifacts(
    warehouse: DuckWarehouse, s3_results: object
) -> None:
    state = elt(return_state=True)
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id

    page = warehouse.data_dir / "dbt-docs" / "shop" / "duckdb-analytics_demo" / "index.html"
    html = page.read_text()
    # One self-contained page: the manifest (lineage) is embedded, nothing to fetch.
    for node in (
        "source.shop.shop.orders",  # a raw table the ELT's loader wrote
        "model.shop.stg_orders",
        "model.shop.fct_orders",
        "exposure.shop.customer_scores",  # the ML step downstream of the marts
    ):
        assert node in html, node
    exposure = re.search(r'"exposure\.shop\.customer_scores":\s*(\{.*?"depends_on":\s*\{.*?\})', html)
    assert exposure and "model.shop.customer_lifetime_value" in exposure.group(1)
    # The page shows each model's compiled SQL (taken from the build, not compiled again) and the
    # columns the catalog read from the warehouse.
    compiled = embedded(html, "manifest")["nodes"]["model.shop.fct_orders"]["compiled_code"]
    assert "stg_orders" in compiled and "{{" not in compiled, compiled
    columns = embedded(html, "catalog")["nodes"]["model.shop.fct_orders"]["columns"]
    assert {"order_id", "customer_id"} <= set(columns), columns

    listed = s3_results.list_objects_v2(Bucket=BUCKET, Prefix="platform/dbt/")  # type: ignore[attr-defined]
    keys = {item["Key"] for item in listed.get("Contents", [])}
    prefix = f"platform/dbt/shop/duckdb-analytics_demo/{run_id}/"
    assert {
        prefix + name for name in ("manifest.json", "run_results.json", "catalog.json", "index.html")
    } <= keys
    body = s3_results.get_object(Bucket=BUCKET, Key=prefix + "run_results.json")["Body"].read()  # type: ignore[attr-defined]
    results = json.loads(body)["results"]
    # (no-op: the exposure of the ML step, a node without SQL)
    assert {r["status"] for r in results} == {"success", "pass", "no-op"} and len(results) > 20, (
        "the build's own results"
    )

    note = artifacts(run_id)["dbt-docs-shop"].data
    assert str(page) in note and f"s3://{BUCKET}/platform/dbt/shop/duckdb-analytics_demo/{run_id}/" in note


def test_the_page_is_linked_through_the_proxy_when_the_ui_is_https() -> None:
    with temporary_settings({PREFECT_UI_URL: "https://prefect.example.com"}):
        assert docs_url("shop", "duckdb", "analytics_demo") == (
            "https://prefect.example.com/dbt-docs/shop/duckdb-analytics_demo/"
        )
    with temporary_settings({PREFECT_UI_URL: "http://localhost:4200"}):
        assert docs_url("shop", "duckdb", "analytics_demo") is None  # no proxy: the artifact names the file
