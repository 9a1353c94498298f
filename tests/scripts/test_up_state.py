"""scripts/lib/up_state.py: what makes a later ./scripts/up do everything again.

The whole path (a second `up` that restarts nothing, an edited flows/prefect.yaml that is
deployed) runs on a real stack in tests/e2e/test_stack.py; these are the rules in isolation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scripts.lib import up_state


def container(status: str = "running", health: str | None = "healthy", code: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "ExitCode": code, "StartedAt": "2026-01-01T00:00:00Z"}
    if health:
        state["Health"] = {"Status": health}
    labels = {up_state.CONFIG_HASH: "abc", up_state.SERVICE: "svc"}
    return {"Name": "/p-svc-1", "Id": "c1", "Image": "sha256:1", "State": state, "Config": {"Labels": labels}}


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (container(), True),
        (container(health=None), True),  # no healthcheck: running is enough
        (container(health="starting"), False),
        (container(health="unhealthy"), False),
        (container("exited", None, 0), True),  # a one-shot that succeeded
        (container("exited", None, 1), False),
        (container("restarting", None), False),
    ],
)
def test_only_services_up_or_done_count_as_settled(found: dict[str, Any], expected: bool) -> None:
    assert up_state.settled(found) is expected


def test_the_fingerprint_follows_flows_and_each_containers_start_but_not_what_runs_write(
    tmp_path: Path,
) -> None:
    flows = tmp_path / "flows"
    (flows / "dbt" / "shop" / "target").mkdir(parents=True)
    (flows / "prefect.yaml").write_text("deployments: []\n")
    before = up_state.fingerprint([container()], flows)
    # dbt's target/ and bytecode are written by runs: no reason to redeploy.
    (flows / "dbt" / "shop" / "target" / "manifest.json").write_text("{}")
    (flows / "__pycache__").mkdir()
    (flows / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert up_state.fingerprint([container()], flows) == before
    restarted = container()
    restarted["State"]["StartedAt"] = "2026-01-02T00:00:00Z"
    assert up_state.fingerprint([restarted], flows) != before
    (flows / "prefect.yaml").write_text("deployments: [{name: x}]\n")
    assert up_state.fingerprint([container()], flows) != before


def test_without_a_record_or_an_engine_up_does_everything(tmp_path: Path) -> None:
    state = tmp_path / ".up-state"
    assert up_state.main(["unchanged", "p", str(state)]) == 1
    state.write_text("x\n")
    # A docker that fails (no engine, a stand-in) is never "nothing changed", and save leaves no record.
    failing = tmp_path / "bin" / "docker"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{failing.parent}:/usr/bin:/bin")
        assert up_state.main(["unchanged", "p", str(state)]) == 1
        assert up_state.main(["save", "p", str(state)]) == 1
    assert not state.exists()
