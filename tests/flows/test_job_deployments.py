"""The jobs' deployments in flows/prefect.yaml, registered for real by `prefect deploy` against the test
server: airbyte/sync and elt/airbyte unscheduled until configured (refused without a connection id),
customer-scores/after-elt started by the completion of an elt run (its trigger as an automation)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ParameterTypeError
from prefect.flows import load_flow_from_entrypoint
from prefect.server.utilities.user_templates import render_user_template_sync
from prefect.settings import PREFECT_API_URL

from tests.flows.elt_testkit import REPO

FLOWS = REPO / "flows"
POOL = "jobs-test-pool"
DEPLOYMENTS = ("after-elt", "sync", "airbyte")


def by_name() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load((FLOWS / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


@pytest.fixture(scope="module")
def deployed() -> None:
    with get_client(sync_client=True) as client:
        if not any(p.name == POOL for p in client.read_work_pools()):
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_WORK_POOL_NAME": POOL}
    names = [arg for name in DEPLOYMENTS for arg in ("--name", name)]
    deploy = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *names],
        cwd=FLOWS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]


def test_airbyte_deployments_wait_for_their_connection(deployed: None) -> None:
    with get_client(sync_client=True) as client:
        sync = client.read_deployment_by_name("airbyte/sync")
        elt_airbyte = client.read_deployment_by_name("elt/airbyte")
        assert sync.schedules == [] and elt_airbyte.schedules == []
        assert sync.work_pool_name == POOL and elt_airbyte.parameters == {"source": {"kind": "airbyte"}}
        for deployment, named in ((sync, "connection_id"), (elt_airbyte, "'source'")):
            with pytest.raises(httpx.HTTPStatusError) as refused:
                client.create_flow_run_from_deployment(deployment.id)
            assert refused.value.response.status_code == 409
            assert named in refused.value.response.text
    # The flow itself names the missing field (as a custom run in the UI shows).
    spec = by_name()["airbyte"]
    flow = load_flow_from_entrypoint(str(FLOWS / spec["entrypoint"]))
    with pytest.raises(ParameterTypeError, match="connection_id"):
        flow.validate_parameters(spec["parameters"])


def test_customer_scores_is_triggered_by_completed_elt_runs(deployed: None) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("customer-scores/after-elt")
        automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    assert deployment.schedules == [], "chained on events, not a clock"
    assert len(automations) == 1
    automation = automations[0]
    trigger = automation.trigger
    assert automation.enabled
    assert trigger.expect == {"prefect.flow-run.Completed"}
    assert trigger.match.model_dump()["prefect.resource.id"] == "prefect.flow-run.*"
    related = trigger.match_related
    related = related[0] if isinstance(related, list) else related
    assert related.model_dump() == {"prefect.resource.role": "flow", "prefect.resource.name": "elt"}
    (action,) = automation.actions
    assert action.type == "run-deployment" and action.deployment_id == deployment.id
    assert "analytics_schema" in action.parameters


@pytest.mark.parametrize(
    ("parameters", "schema"),
    [
        ({"source": {"kind": "demo"}}, "analytics_demo"),
        ({"source": {"kind": "airbyte", "connection_id": "x"}}, "analytics_airbyte"),
        ({}, "analytics_demo"),  # a run that took the flow's default source
    ],
)
def test_the_trigger_scores_the_marts_of_the_elt_run_that_completed(
    parameters: dict[str, Any], schema: str
) -> None:
    # Rendered as the server renders a RunDeployment action's templates (flow_run: the event's run).
    template = by_name()["after-elt"]["triggers"][0]["parameters"]["analytics_schema"]
    flow_run = FlowRun(flow_id="00000000-0000-0000-0000-000000000000", parameters=parameters)
    assert render_user_template_sync(template, {"flow_run": flow_run}) == schema
