"""Automations as code, made to match at every start of the init (an edit in the UI is undone):

- runs whose heartbeat stopped are marked Crashed (their container died unseen);
- runs stuck in Pending longer than PENDING_RUN_TIMEOUT_MINUTES are marked Crashed;
- runs still Late LATE_RUN_TIMEOUT_MINUTES after their scheduled time are Cancelled (and alerted);
- with ALERT_WEBHOOK_URL: an alert for every failed or crashed run, and one when the work pool has
  had no ready worker for WORKER_DOWN_ALERT_SECONDS after Prefect marked it not ready.

Each state change waits for one event and expects another within a window (a proactive trigger):
a run that moves on or ends in time closes its window, so runs that already ended are never
touched. The actions propose states through Prefect's orchestration (never forced): a run that
ended meanwhile keeps its state. Alerts name the run, its deployment, its state and message, and
carry a link that opens the run in the user's browser (services/ui_url.py).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from services.init import log
from services.ui_url import ui_url
from services.work_pools import HEARTBEAT_SECONDS

ALERT_BLOCK_NAME = "platform-alerts"
ALERT_AUTOMATION = "alert on failed or crashed flow runs"
ZOMBIE_AUTOMATION = "mark flow runs without heartbeat as crashed"
PENDING_AUTOMATION = "crash flow runs stuck in Pending"
LATE_AUTOMATION = "cancel flow runs that stay Late"
WORKER_DOWN_AUTOMATION = "alert when no worker takes the pool's runs"
WEBHOOK_AUTOMATIONS = (ALERT_AUTOMATION, WORKER_DOWN_AUTOMATION)
# The defaults of .env.example, for runs outside compose.
DEFAULTS = {
    "PENDING_RUN_TIMEOUT_MINUTES": 15,
    "LATE_RUN_TIMEOUT_MINUTES": 60,
    "WORKER_DOWN_ALERT_SECONDS": 120,
}

TERMINAL = ("Completed", "Failed", "Cancelled", "Crashed")
# Every state a run can move to from Pending or Late other than staying there.
MOVED_ON = (
    *TERMINAL,
    "Running",
    "Cancelling",
    "Scheduled",
    "AwaitingRetry",
    "AwaitingConcurrencySlot",
    "Paused",
    "Suspended",
)


def events(*states: str) -> set[str]:
    return {f"prefect.flow-run.{state}" for state in states}


def number_setting(name: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return DEFAULTS[name]
    if not raw.isdigit() or int(raw) < 1:
        sys.exit(f"prefect-init: {name} must be a whole number of at least 1, got {raw!r} (see .env.example)")
    return int(raw)


def upsert_automation(client: Any, automation: AutomationCore) -> None:
    existing = client.read_automations_by_name(automation.name)
    for extra in existing[1:]:
        client.delete_automation(extra.id)
    if not existing:
        client.create_automation(automation)
        log(f"automation {automation.name!r} created")
        return
    current = AutomationCore.model_validate(existing[0].model_dump())
    # Python-mode dumps: event sets compare as sets (their JSON lists come in any order).
    if current.model_dump() == automation.model_dump():
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


def run_alert(block_id: Any, base_url: str, headline: str) -> SendNotification:
    """A notification naming the run, its deployment, state and message, with a link to it."""
    deployment = "{{ flow.name }}/{{ deployment.name if deployment else '(no deployment)' }}"
    return SendNotification(
        block_document_id=block_id,
        subject=f"Prefect: {deployment} run {{{{ flow_run.name }}}} {headline}",
        body=(
            f"Deployment: {deployment}\n"
            "Run: {{ flow_run.name }}\n"
            "State: {{ flow_run.state.name }}\n"
            "Message: {{ flow_run.state.message }}\n"
            f"Open it: {base_url}/runs/flow-run/{{{{ flow_run.id }}}}"
        ),
    )


# Heartbeats missed before a run counts as gone. The Docker worker finds a vanished container
# within a minute by asking Docker (services/worker/reconcile.py); this is the backstop for runs no
# worker watches (a worker that cannot come back, other pools). Shorter would crash live runs each
# time the server is away for a few minutes (heartbeats cannot arrive): measured, a restart under
# heavy load took 220 s, and a 120 s window crashed a healthy ELT.
ZOMBIE_HEARTBEATS = 10


def zombie_automation() -> AutomationCore:
    window = HEARTBEAT_SECONDS * ZOMBIE_HEARTBEATS
    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="A flow run whose container died stops sending heartbeats: mark it Crashed.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *events(*TERMINAL)},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                state="CRASHED",
                message=f"No heartbeat for {window // 60} min: the flow run's process is gone.",
            )
        ],
    )


def pending_automation(minutes: int) -> AutomationCore:
    return AutomationCore(
        name=PENDING_AUTOMATION,
        description=f"A run Pending for {minutes} min never got a running container: mark it Crashed.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            after=events("Pending"),
            expect=events(*MOVED_ON),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(minutes=minutes),
        ),
        actions=[
            ChangeFlowRunState(
                state="CRASHED",
                message=(
                    f"Stuck in Pending for {minutes} min (PENDING_RUN_TIMEOUT_MINUTES): its container "
                    "never started running. See `docker compose logs prefect-worker`."
                ),
            )
        ],
    )


def late_automation(minutes: int, block_id: Any, base_url: str) -> AutomationCore:
    actions: list[Any] = [
        ChangeFlowRunState(
            state="CANCELLED",
            message=(
                f"Not started {minutes} min after its scheduled time (LATE_RUN_TIMEOUT_MINUTES): no "
                "worker took it. Is prefect-worker running (`docker compose ps`)?"
            ),
        )
    ]
    if block_id is not None:
        actions.append(run_alert(block_id, base_url, "was cancelled: it never started"))
    return AutomationCore(
        name=LATE_AUTOMATION,
        description=f"A run still Late {minutes} min after its scheduled time: cancel it and alert.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            after=events("Late"),
            expect=events(*MOVED_ON, "Pending"),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(minutes=minutes),
        ),
        actions=actions,
    )


def failure_alert_automation(block_id: Any, base_url: str) -> AutomationCore:
    return AutomationCore(
        name=ALERT_AUTOMATION,
        description="Notify ALERT_WEBHOOK_URL when a flow run fails or crashes.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            expect=events("Failed", "Crashed"),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[run_alert(block_id, base_url, "is {{ flow_run.state.name }}")],
    )


def worker_down_automation(block_id: Any, base_url: str, pool: str, seconds: int) -> AutomationCore:
    return AutomationCore(
        name=WORKER_DOWN_AUTOMATION,
        description=(
            f"Notify ALERT_WEBHOOK_URL when work pool {pool!r} stays not ready (no worker) for {seconds} s."
        ),
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.work-pool.*", "prefect.resource.name": pool},
            after={"prefect.work-pool.not-ready"},
            expect={"prefect.work-pool.ready"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=seconds),
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=f"Prefect: no worker is taking the runs of work pool {pool}",
                body=(
                    f"Work pool {pool} has had no ready worker for about {seconds + 60} s: scheduled "
                    "runs are not starting. On the host: `docker compose ps prefect-worker` and "
                    f"`docker compose logs --tail 50 prefect-worker`, then ./scripts/up.\n"
                    f"Open it: {base_url}/work-pools/work-pool/{pool}"
                ),
            )
        ],
    )


def ensure_automations(client: Any) -> None:
    base_url = ui_url(os.environ)
    url = os.environ.get("ALERT_WEBHOOK_URL", "").strip()
    block_id = alert_block_id(url) if url else None
    wanted = [
        zombie_automation(),
        pending_automation(number_setting("PENDING_RUN_TIMEOUT_MINUTES")),
        late_automation(number_setting("LATE_RUN_TIMEOUT_MINUTES"), block_id, base_url),
    ]
    if block_id is not None:
        pool = os.environ.get("PREFECT_WORK_POOL_NAME", "docker-pool")
        wanted += [
            failure_alert_automation(block_id, base_url),
            worker_down_automation(block_id, base_url, pool, number_setting("WORKER_DOWN_ALERT_SECONDS")),
        ]
    for automation in wanted:
        upsert_automation(client, automation)
    if block_id is None:
        for name in WEBHOOK_AUTOMATIONS:
            delete_automation(client, name)
