"""The stack's server records task runs in batches (docker-compose.yml's TASK_RUN_RECORDER settings):
a flow with fewer task runs than a batch still has them all within about the flush interval, and one
with more than a batch has every one, none twice, each with its final state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.prefect_server import prefect_server, stack_recording_settings

pytestmark = pytest.mark.timeout(300)

FLOW = """
import sys
from prefect import flow, task

@task(task_run_name="of-{n}-node-{i}")
def node(n: int, i: int) -> int:
    return i

@flow
def many(n: int) -> None:
    for i in range(n):
        node(n, i)

many(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url


def run_flow(api_url: str, tasks: int, workdir: Path) -> None:
    script = workdir / "many.py"
    script.write_text(FLOW)
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, str(script), str(tasks)], env=env, check=True, capture_output=True)


def recorded(api_url: str) -> dict[str, int]:
    """Task runs the server holds, by final state type and by name: each name exactly once."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = []
        while batch := client.read_task_runs(limit=200, offset=len(runs)):
            runs.extend(batch)
    states = Counter(run.state_type.value if run.state_type else "none" for run in runs)
    return {**states, "distinct names": len({run.name for run in runs})}


def wait_for_count(api_url: str, total: int, timeout: float) -> tuple[dict[str, int], float]:
    started = time.monotonic()
    while True:
        now = recorded(api_url)
        if now.get("COMPLETED", 0) >= total or time.monotonic() - started > timeout:
            return now, time.monotonic() - started
        time.sleep(0.2)


def test_the_stack_records_task_runs_in_batches_flushed_every_second_at_least() -> None:
    settings = stack_recording_settings()
    assert int(settings["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"]) > 1
    # Prefect sleeps int(FLUSH_INTERVAL) between flushes: below 1 it would flush in a busy loop.
    assert float(settings["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL"]) >= 1


def test_fewer_task_runs_than_a_batch_are_recorded_soon_after_the_flow(api_url: str, tmp_path: Path) -> None:
    run_flow(api_url, 3, tmp_path)
    states, waited = wait_for_count(api_url, 3, timeout=30)
    assert states.get("COMPLETED") == 3 and states["distinct names"] == 3, states
    assert waited < 10, f"the last task runs were recorded {waited:.1f} s after the flow ended"


def test_more_task_runs_than_a_batch_are_each_recorded_once_completed(api_url: str, tmp_path: Path) -> None:
    before = recorded(api_url).get("COMPLETED", 0)
    run_flow(api_url, 250, tmp_path)
    states, _ = wait_for_count(api_url, before + 250, timeout=60)
    assert states.get("COMPLETED") == before + 250, states
    assert set(states) <= {"COMPLETED", "distinct names"}, states
    assert states["distinct names"] == before + 250, states
