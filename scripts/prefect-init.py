#!/usr/bin/env python3
"""prefect-init: make the running server match the code. Run by the one-shot compose service.

1. the shared data volume is owned by the flow user (uid 1000);
2. the Docker work pool exists with the base job template below;
3. the deployments of flows/prefect.yaml are registered (`prefect deploy --all`);
4. the automations exist: alert on failed/crashed runs (when ALERT_WEBHOOK_URL is set) and mark
   runs whose heartbeat stopped as crashed.
Idempotent: each step compares what the server has with what it should have and says what it did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

FLOWS_DIR = Path("/opt/prefect/flows")
DATA_DIR = Path("/data")
FLOW_UID = 1000
HEARTBEAT_SECONDS = 30
ALERT_BLOCK_NAME = "platform-alerts"
ALERT_AUTOMATION = "alert on failed or crashed flow runs"
ZOMBIE_AUTOMATION = "mark flow runs without heartbeat as crashed"


def setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"prefect-init: {name} is not set; it comes from .env (see .env.example)")
    return value


def log(message: str) -> None:
    print(f"prefect-init: {message}", flush=True)


def prepare_data_volume() -> None:
    """Docker gives a new named volume the image's /data ownership (uid 1000); check it."""
    for path in (DATA_DIR, DATA_DIR / "results"):
        try:
            path.mkdir(exist_ok=True)
            owned = path.stat().st_uid == FLOW_UID
        except PermissionError:
            owned = False
        if not owned:
            sys.exit(
                f"prefect-init: {path} on the data volume is not owned by uid {FLOW_UID}; fix it with "
                f"`docker run --rm -u 0 -v VOLUME:/data IMAGE chown -R {FLOW_UID}:{FLOW_UID} /data`"
            )
    log(f"data volume ready at {DATA_DIR} (owner uid {FLOW_UID})")


def desired_job_template() -> dict[str, Any]:
    """The default Docker job template with this stack's defaults filled in."""
    from prefect_docker.worker import DockerWorker

    template = DockerWorker.get_default_base_job_template()
    platform_dir = setting("PLATFORM_DIR").rstrip("/")
    if not platform_dir.startswith("/"):
        sys.exit(f"prefect-init: PLATFORM_DIR must be an absolute host path, got {platform_dir!r}")
    defaults = {
        "image": setting("FLOW_RUN_IMAGE"),
        # A locally built image: never try a registry (unset means Always for most tags).
        "image_pull_policy": "Never",
        "networks": [setting("PLATFORM_NETWORK")],
        # Bind mounts are resolved by the host's engine: host paths, not this container's.
        "volumes": [
            f"{platform_dir}/flows:/opt/prefect/flows:ro",
            f"{platform_dir}/.env:/run/secrets/platform.env:ro",
            f"{setting('PLATFORM_DATA_VOLUME')}:/data",
        ],
        # The engine directly, not `prefect flow-run execute`: that CLI imports prefect, then
        # starts the engine in a subprocess that imports it again, which doubled the time from
        # trigger to Running here (scripts/bench). The engine handles SIGTERM itself.
        "command": "python -m prefect.engine",
        "auto_remove": True,
        "stream_output": True,
        "mem_limit": setting("FLOW_RUN_MEMORY_LIMIT"),
        "env": {
            "PLATFORM_NETWORK": setting("PLATFORM_NETWORK"),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        },
        "labels": {"prefect-platform.role": "flow-run"},
    }
    properties = template["variables"]["properties"]
    for key, value in defaults.items():
        properties[key]["default"] = value
    return template


def ensure_work_pool(client: Any) -> None:
    name = setting("PREFECT_WORK_POOL_NAME")
    template = desired_job_template()
    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type="docker", base_job_template=template))
        log(f"work pool {name!r} created (type docker)")
        return
    if pool.type != "docker":
        sys.exit(f"prefect-init: work pool {name!r} exists with type {pool.type!r}, not docker; delete it")
    if pool.base_job_template == template:
        log(f"work pool {name!r} unchanged")
        return
    client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    log(f"work pool {name!r} base job template updated")


def register_deployments() -> None:
    result = subprocess.run(
        ["prefect", "--no-prompt", "deploy", "--all"],
        cwd=FLOWS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        sys.exit(
            "prefect-init: `prefect deploy --all` failed in flows/ (output above); fix flows/prefect.yaml"
        )
    names = [line.split("'")[1] for line in result.stdout.splitlines() if "Deployment '" in line]
    log(f"deployments registered from flows/prefect.yaml: {', '.join(names) or '(none reported)'}")


def ensure_server_objects_of_flows() -> None:
    """Server-side objects the flows declare as code (the warehouse write locks)."""
    from flows.platform_objects import ensure_server_objects

    ensure_server_objects()
    log("server objects of the flows ensured")


def upsert_automation(client: Any, automation: AutomationCore) -> None:
    existing = client.read_automations_by_name(automation.name)
    for extra in existing[1:]:
        client.delete_automation(extra.id)
    if not existing:
        client.create_automation(automation)
        log(f"automation {automation.name!r} created")
        return
    current = AutomationCore.model_validate(existing[0].model_dump())
    if current.model_dump(mode="json") == automation.model_dump(mode="json"):
        log(f"automation {automation.name!r} unchanged")
        return
    client.update_automation(existing[0].id, automation)
    log(f"automation {automation.name!r} updated")


def delete_automation(client: Any, name: str) -> None:
    for automation in client.read_automations_by_name(name):
        client.delete_automation(automation.id)
        log(f"automation {name!r} deleted (ALERT_WEBHOOK_URL is empty)")


def alert_block_id(url: str) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name="prefect-platform",
        url=url,
        method="POST",
        # Slack-compatible; most chat webhooks accept {"text": ...}.
        json_data={"text": "{{subject}}\n{{body}}"},
    )
    return block.save(ALERT_BLOCK_NAME, overwrite=True)


def ensure_automations(client: Any) -> None:
    terminal = [f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")]
    upsert_automation(
        client,
        AutomationCore(
            name=ZOMBIE_AUTOMATION,
            description="A flow run whose container died stops sending heartbeats: mark it Crashed.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", *terminal},
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=HEARTBEAT_SECONDS * 4),
            ),
            actions=[
                ChangeFlowRunState(
                    state="CRASHED",
                    message=f"No heartbeat for {HEARTBEAT_SECONDS * 4} s: the flow-run container is gone.",
                )
            ],
        ),
    )
    url = os.environ.get("ALERT_WEBHOOK_URL", "").strip()
    if not url:
        delete_automation(client, ALERT_AUTOMATION)
        return
    upsert_automation(
        client,
        AutomationCore(
            name=ALERT_AUTOMATION,
            description="Notify ALERT_WEBHOOK_URL when a flow run fails or crashes.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=alert_block_id(url),
                    subject="Prefect flow run {{ flow_run.name }} is {{ flow_run.state.name }}",
                    body=(
                        "Flow {{ flow.name }}, run {{ flow_run.name }}: {{ flow_run.state.name }}\n"
                        "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}"
                    ),
                )
            ],
        ),
    )


def main() -> None:
    prepare_data_volume()
    with get_client(sync_client=True) as client:
        ensure_work_pool(client)
        ensure_server_objects_of_flows()
        register_deployments()
        ensure_automations(client)
    summary = {"pool": setting("PREFECT_WORK_POOL_NAME"), "network": setting("PLATFORM_NETWORK")}
    log(f"done {json.dumps(summary)}")


if __name__ == "__main__":
    main()
