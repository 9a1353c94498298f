"""Automations as code: mark runs whose heartbeat stopped as Crashed; alert on failed/crashed runs."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from services.init import log
from services.work_pools import HEARTBEAT_SECONDS

ALERT_BLOCK_NAME = "platform-alerts"
ALERT_AUTOMATION = "alert on failed or crashed flow runs"
ZOMBIE_AUTOMATION = "mark flow runs without heartbeat as crashed"


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
