"""services/flow_runner/engine.py: the flow-run command, against a real Prefect server.

The engine runs as a subprocess exactly as in a flow-run container: the deployment's pull step
enters the (here: temporary) code folder, the flow is loaded from it, and the run continues in an
empty scratch folder. A flow that cannot be imported ends Failed naming its file and line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from services.flow_code import code_location
from tests.support import REPO

ENGINE = REPO / "services" / "flow_runner" / "engine.py"
pytestmark = pytest.mark.timeout(300)

WRITER = """\
import atexit
import threading
import time
from pathlib import Path
from prefect import flow, get_run_logger, task
from prefect.events import emit_event

@task
def write() -> None:
    Path("out.txt").write_text("written")  # relative: lands in the working directory

def later(name: str) -> None:
    time.sleep(0.5)
    Path(name).write_text("done")

@flow
def writer() -> str:
    write()
    # What Python's exit does for a flow's code still happens: its atexit handlers and threads.
    atexit.register(later, "atexit.txt")
    threading.Thread(target=later, args=("thread.txt",)).start()
    get_run_logger().info("the writer's last words")
    emit_event(event="platform.test.writer-done", resource={"prefect.resource.id": "platform.test.writer"})
    return str(Path.cwd())
"""
BROKEN = """\
from prefect import flow

import helper_that_does_not_exist  # line 3

@flow
def broken() -> None: ...
"""


@flow
def placeholder() -> None:
    """Only names the flow the deployments belong to."""


def test_code_location_names_the_innermost_frame_in_the_code_folder(tmp_path: Path) -> None:
    code = tmp_path / "flows"
    code.mkdir()
    (code / "bad.py").write_text("x = 1\ndef f():\n    raise ValueError('boom')\n")
    namespace: dict[str, object] = {}
    exec(compile((code / "bad.py").read_text(), str(code / "bad.py"), "exec"), namespace)  # noqa: S102
    with pytest.raises(ValueError) as raised:
        namespace["f"]()  # type: ignore[operator]
    assert code_location(raised.value, code) == "flows/bad.py, line 3"
    syntax = SyntaxError("invalid syntax", (str(code / "s.py"), 7, 1, "def (", 7, 2))
    assert code_location(syntax, code) == "flows/s.py, line 7"
    assert code_location(RuntimeError("x"), code) == "no frame in flows/"


def run_deployment_in_engine(code: Path, scratch: Path, entrypoint: str, flow_name: str) -> dict:
    async def create() -> UUID:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name(flow_name)
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name=f"engine-test-{flow_name}",
                entrypoint=entrypoint,
                pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(code)}}],
            )
            return (await client.create_flow_run_from_deployment(deployment_id)).id

    import anyio

    run_id = anyio.run(create)
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PLATFORM_SCRATCH_DIR": str(scratch),
        "PREFECT__FLOW_RUN_ID": str(run_id),
    }
    result = subprocess.run(
        [sys.executable, str(ENGINE)], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )

    async def read() -> dict:
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
            return {
                "id": run_id,
                "state": run.state,
                "returncode": result.returncode,
                "stderr": result.stderr,
            }

    return anyio.run(read)


def what_reached_the_server(run_id: UUID) -> dict:
    """The writer run's logs, task runs and the event it emitted last, once they have arrived (the
    server records logs and task-run events a moment after they are sent)."""
    import anyio
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    async def read() -> dict:
        async with get_client() as client:
            for _ in range(40):
                logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
                task_runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
                )
                events = await client._client.post(
                    "/events/filter",
                    json={"filter": {"event": {"name": ["platform.test.writer-done"]}}},
                )
                done = events.raise_for_status().json()["events"]
                if done and any("Finished in state" in log.message for log in logs):
                    break
                await anyio.sleep(0.25)
            return {
                "logs": [log.message for log in logs],
                "task_runs": {t.name: t.state.type.value if t.state else None for t in task_runs},
                "last_event": done,
            }

    return anyio.run(read)


def test_a_flow_writes_relative_paths_into_its_scratch_folder_not_the_code(
    prefect_server: None, tmp_path: Path
) -> None:
    code, scratch = tmp_path / "flows", tmp_path / "scratch"
    code.mkdir()
    scratch.mkdir()
    (code / "writer.py").write_text(WRITER)
    code.chmod(0o555)  # read-only, like the mount in the stack
    try:
        outcome = run_deployment_in_engine(code, scratch, "writer.py:writer", "writer")
    finally:
        code.chmod(0o755)
    assert outcome["state"].is_completed(), (outcome["state"], outcome["stderr"][-3000:])
    assert (scratch / "out.txt").read_text() == "written"
    assert (scratch / "atexit.txt").read_text() == (scratch / "thread.txt").read_text() == "done"
    assert not (code / "out.txt").exists()
    # The engine leaves without Python's teardown once the run ended: what Prefect still queued
    # (the last log lines, the task run's final state, an event) reached the server first.
    assert outcome["returncode"] == 0, outcome["stderr"][-3000:]
    sent = what_reached_the_server(outcome["id"])
    assert "the writer's last words" in sent["logs"], sent["logs"]
    assert any(line.startswith("Finished in state Completed") for line in sent["logs"]), sent["logs"]
    assert list(sent["task_runs"].values()) == ["COMPLETED"], sent["task_runs"]
    assert sent["last_event"], "the event the flow emitted last never reached the server"


def test_a_flow_that_cannot_be_imported_fails_naming_its_file_and_line(
    prefect_server: None, tmp_path: Path
) -> None:
    code, scratch = tmp_path / "flows", tmp_path / "scratch"
    code.mkdir()
    scratch.mkdir()
    (code / "broken.py").write_text(BROKEN)
    outcome = run_deployment_in_engine(code, scratch, "broken.py:broken", "broken")
    state = outcome["state"]
    assert state.is_failed(), (state, outcome["stderr"][-3000:])
    assert "flows/broken.py, line 3: ModuleNotFoundError" in state.message, state.message
    assert "helper_that_does_not_exist" in state.message
    assert outcome["returncode"] != 0
