"""End to end: the jobs beyond the ELT on a real stack. A completed elt/daily run starts the ML step
(customer-scores/after-elt) by itself through its deployment trigger, and its dbt build writes the
docs page (lineage); then the same deployments move to the process pool (PROCESS_WORK_POOL_NAME and
DEPLOY_WORK_POOL_NAME, ./scripts/up) and elt/daily runs inside the process worker's container, with
no container of its own; last, with HTTPS on (TLS_MODE=internal) the proxy serves the docs page at
/dbt-docs/ to whoever holds the platform's credential.

One stack for the module; the tests run in file order and the second builds on the first's warehouse.
Timings are printed (run with -s to see them), not asserted.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.proxy import ToLoopback
from tests.support.report import announce
from tests.support.stack import PrefectApi, Stack, copy_checkout, env_value, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
PROCESS_POOL = "process-pool"


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("clone")
    copy_checkout(root)
    stack = Stack(root)
    try:
        stack.up_result = stack.up()  # type: ignore[attr-defined]
        yield stack
    finally:
        if request.module.__dict__.get("_any_test_failed") or not hasattr(stack, "up_result"):
            announce(stack.dump_diagnostics())
            announce(stack.compose("--profile", "process", "logs", "--tail", "80", check=False).stdout)
        stack.compose(
            "--profile", "process", "down", "-v", "--remove-orphans", "--timeout", "10", check=False
        )
        stack.down()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[PrefectApi]:
    with stack.client() as client:
        yield PrefectApi(client)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def runs_of(api: PrefectApi, flow: str, after: str) -> list[dict[str, Any]]:
    """Runs of ``flow`` created after the ISO time ``after``, oldest first."""
    body = {
        "flows": {"name": {"any_": [flow]}},
        "flow_runs": {"start_time": {"after_": after}},
        "sort": "START_TIME_ASC",
        "limit": 20,
    }
    started = api.post("/flow_runs/filter", body)
    body["flow_runs"] = {"expected_start_time": {"after_": after}}
    scheduled = api.post("/flow_runs/filter", body)
    by_id = {run["id"]: run for run in [*started, *scheduled]}
    return sorted(by_id.values(), key=lambda r: r["created"])


def wait_for_chained_run(api: PrefectApi, flow: str, after: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs_of(api, flow, after)
        if found:
            return api.wait(found[0]["id"], timeout=max(10, deadline - time.monotonic()))
        time.sleep(0.5)
    raise AssertionError(f"no {flow} run started within {timeout}s of {after}")


def elt_then_scores(api: PrefectApi) -> tuple[dict[str, Any], dict[str, Any]]:
    elt = api.wait(api.trigger("elt", "daily"), timeout=900)
    assert elt["state_type"] == "COMPLETED", elt["state"]
    scores = wait_for_chained_run(api, "customer-scores", elt["end_time"])
    return elt, scores


def test_a_completed_elt_run_starts_customer_scores_by_itself(stack: Stack, api: PrefectApi) -> None:
    elt, scores = elt_then_scores(api)

    assert scores["state_type"] == "COMPLETED", scores["state"]
    deployment = api.deployment("customer-scores", "after-elt")
    assert scores["deployment_id"] == deployment["id"]
    assert (scores.get("created_by") or {}).get("type") == "AUTOMATION", scores.get("created_by")
    assert scores["parameters"] == {"analytics_schema": "analytics_demo"}  # elt/daily's source: demo
    artifact = next(a for a in api.artifacts(scores["id"]) if a["key"] == "customer-scores")
    assert "| MAE, model |" in artifact["data"] and "## Top 10 customers" in artifact["data"]
    # The build's lineage page, named on the run (no HTTPS yet: by its file on the data volume).
    docs = next(a for a in api.artifacts(elt["id"]) if a["key"] == "dbt-docs-shop")
    assert "/data/dbt-docs/shop/duckdb-analytics_demo/index.html" in docs["data"]
    # In the Docker pool each run is a container named after it (the process pool's are not: below).
    created = containers_created(stack)
    assert f"'{elt['name']}'" in created and f"'{scores['name']}'" in created, created
    elt_end = when(elt["end_time"])
    print(
        "\nchain (docker pool): elt/daily completed -> customer-scores created "
        f"{(when(scores['created']) - elt_end).total_seconds():.1f} s, running "
        f"{(when(scores['start_time']) - elt_end).total_seconds():.1f} s later; customer-scores "
        f"ran {scores['total_run_time']:.1f} s; elt/daily ran {elt['total_run_time']:.1f} s"
    )


def set_env(stack: Stack, **values: str) -> None:
    env = stack.root / ".env"
    lines = [line for line in env.read_text().splitlines() if line.split("=", 1)[0] not in values]
    env.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in values.items())]) + "\n")


def containers_created(stack: Stack) -> str:
    """What the stack's Docker worker says it created (one line per flow-run container, named after
    its run)."""
    logs = stack.compose("logs", "--no-color", "prefect-worker").stdout
    return "\n".join(line for line in logs.splitlines() if "Creating Docker container" in line)


def test_the_same_deployments_run_in_the_process_pool(stack: Stack, api: PrefectApi) -> None:
    set_env(stack, PROCESS_WORK_POOL_NAME=PROCESS_POOL, DEPLOY_WORK_POOL_NAME=PROCESS_POOL)
    started = time.monotonic()
    stack.run("./scripts/up", "--no-build")
    print(f"\nup with the process pool: {time.monotonic() - started:.0f} s")
    worker = stack.compose("--profile", "process", "ps", "-q", "prefect-process-worker").stdout.strip()
    assert worker, "./scripts/up did not start the process worker"
    pool = api.get(f"/work_pools/{PROCESS_POOL}")
    assert pool["type"] == "process"
    assert api.deployment("elt", "daily")["work_pool_name"] == PROCESS_POOL
    assert api.deployment("customer-scores", "after-elt")["work_pool_name"] == PROCESS_POOL

    elt, scores = elt_then_scores(api)

    assert scores["state_type"] == "COMPLETED", scores["state"]
    created = containers_created(stack)
    for run in (elt, scores):
        assert run["work_pool_name"] == PROCESS_POOL
        assert f"'{run['name']}'" not in created, "a process-pool run must not get a container"
        assert str(run["infrastructure_pid"]).isdigit(), run["infrastructure_pid"]  # a process id
    logs = stack.compose("--profile", "process", "logs", "--no-color", "prefect-process-worker").stdout
    assert elt["name"] in logs and scores["name"] in logs, "the runs' output is the process worker's"
    stats = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", worker],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    to_running = (when(elt["start_time"]) - when(elt["expected_start_time"])).total_seconds()
    chained = (when(scores["start_time"]) - when(elt["end_time"])).total_seconds()
    print(
        f"process pool: elt/daily ran {elt['total_run_time']:.1f} s (trigger -> Running {to_running:.1f} s), "
        f"customer-scores running {chained:.1f} s after elt completed and ran "
        f"{scores['total_run_time']:.1f} s; worker container now {stats}"
    )


def test_the_proxy_serves_the_lineage_page_to_signed_in_users_only(stack: Stack) -> None:
    hostname, port = "platform.docs.test", free_port()
    set_env(
        stack,
        TLS_MODE="internal",
        PUBLIC_HOSTNAME=hostname,
        HTTPS_HOST_PORT=str(port),
        HTTP_HOST_PORT=str(free_port()),
    )
    stack.run("./scripts/up")  # builds the proxy image
    user, password = env_value(stack.root / ".env", "PREFECT_API_AUTH_STRING").split(":", 1)
    page = f"https://{hostname}:{port}/dbt-docs/shop/duckdb-analytics_demo/"
    with httpx.Client(transport=ToLoopback(hostname, verify=False), timeout=30) as https:
        anonymous = https.get(page)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic "), "a browser must ask for it"
        assert https.get(page, auth=(user, "not-the-password")).status_code == 401
        signed_in = https.get(page, auth=(user, password))
        assert signed_in.status_code == 200, signed_in.text[:300]
        for node in ("source.shop.shop.orders", "model.shop.fct_orders", "exposure.shop.customer_scores"):
            assert node in signed_in.text, node
        # The page's inline scripts are allowed there only; the UI keeps its strict policy.
        assert "'unsafe-inline'" in signed_in.headers["content-security-policy"].split("script-src")[1]
        ui = https.get(f"https://{hostname}:{port}/")
        assert "script-src 'self';" in ui.headers["content-security-policy"]
