"""services/init/automations.py: the automations as code, on the session's real Prefect server.

What exists with and without a webhook, that a second init changes nothing, that alerts carry the
run's deployment, state, message and a link the user's browser opens, and that no state change can
fire on a run that already ended (every trigger expects the terminal states).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from services.init import automations
from services.init.automations import (
    ALERT_AUTOMATION,
    LATE_AUTOMATION,
    PENDING_AUTOMATION,
    WORKER_DOWN_AUTOMATION,
    ZOMBIE_AUTOMATION,
    ensure_automations,
)

pytestmark = pytest.mark.timeout(120)
OURS = (ALERT_AUTOMATION, LATE_AUTOMATION, PENDING_AUTOMATION, WORKER_DOWN_AUTOMATION, ZOMBIE_AUTOMATION)


@pytest.fixture
def client(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("ALERT_WEBHOOK_URL", "PREFECT_UI_URL", "TLS_MODE", "PENDING_RUN_TIMEOUT_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOST_PORT", "4315")
    monkeypatch.setenv("PREFECT_WORK_POOL_NAME", "docker-pool")
    with get_client(sync_client=True) as client:
        yield client
        for name in OURS:
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)


def ours(client: Any) -> dict[str, Any]:
    return {name: found[0] for name in OURS if (found := client.read_automations_by_name(name))}


def test_without_a_webhook_stuck_runs_are_still_ended_but_nothing_is_sent(client: Any) -> None:
    ensure_automations(client)
    found = ours(client)
    assert set(found) == {ZOMBIE_AUTOMATION, PENDING_AUTOMATION, LATE_AUTOMATION}
    assert [action.type for action in found[LATE_AUTOMATION].actions] == ["change-flow-run-state"]
    pending = found[PENDING_AUTOMATION]
    assert pending.trigger.within.total_seconds() == 15 * 60 and pending.actions[0].state.value == "CRASHED"
    assert found[LATE_AUTOMATION].trigger.within.total_seconds() == 60 * 60


def test_no_automation_changes_a_run_that_already_ended(client: Any) -> None:
    ensure_automations(client)
    for automation in ours(client).values():
        expected = automation.trigger.expect
        assert {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")} <= expected
        for action in automation.actions:
            assert not getattr(action, "force", False), f"{automation.name} must not force a state"


def test_with_a_webhook_alerts_name_the_run_and_link_to_it(
    client: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "http://hooks.example.com/alert")
    monkeypatch.setenv("PENDING_RUN_TIMEOUT_MINUTES", "2")
    ensure_automations(client)
    found = ours(client)
    assert set(found) == set(OURS)
    alert = found[ALERT_AUTOMATION].actions[0]
    for part in (
        "{{ deployment.name",
        "{{ flow_run.name }}",
        "{{ flow_run.state.name }}",
        "{{ flow_run.state.message }}",
    ):
        assert part in alert.body, part
    assert "Open it: http://localhost:4315/runs/flow-run/{{ flow_run.id }}" in alert.body
    late_actions = [action.type for action in found[LATE_AUTOMATION].actions]
    assert late_actions == ["change-flow-run-state", "send-notification"], "a cancelled run is alerted too"
    down = found[WORKER_DOWN_AUTOMATION]
    assert down.trigger.after == {"prefect.work-pool.not-ready"}
    assert down.trigger.expect == {"prefect.work-pool.ready"}
    assert down.trigger.match.get("prefect.resource.name") in ("docker-pool", ["docker-pool"])
    assert found[PENDING_AUTOMATION].trigger.within.total_seconds() == 120

    capsys.readouterr()
    ensure_automations(client)  # every start of the init: nothing to change
    again = capsys.readouterr().out
    assert again.count("unchanged") == len(OURS) and "created" not in again and "updated" not in again, again

    monkeypatch.setenv("ALERT_WEBHOOK_URL", "")
    ensure_automations(client)
    assert set(ours(client)) == {ZOMBIE_AUTOMATION, PENDING_AUTOMATION, LATE_AUTOMATION}


@pytest.mark.parametrize("value", ["0", "ten", "-5"])
def test_a_bad_timeout_stops_the_init_naming_it(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATE_RUN_TIMEOUT_MINUTES", value)
    with pytest.raises(SystemExit, match="LATE_RUN_TIMEOUT_MINUTES must be a whole number"):
        automations.number_setting("LATE_RUN_TIMEOUT_MINUTES")
