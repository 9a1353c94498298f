"""services/worker/wakeup.py: a worker picks up runs on the server's events, not on its timer.

The session's real Prefect server and its real event stream; the wake-ups applied to Prefect's
ProcessWorker as the platform applies them, with `run` recording instead of starting a process.
The timed ask is set to 60 s, so a run picked up within seconds was picked up by an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_WORKER_PREFETCH_SECONDS, PREFECT_WORKER_QUERY_SECONDS, temporary_settings
from prefect.states import Cancelling, Running
from prefect.workers.process import ProcessWorker, ProcessWorkerResult

from services.worker import wakeup
from services.worker.wakeup import Alarm, EventWakeups, safety_seconds

pytestmark = pytest.mark.timeout(300)


@flow
def noop() -> None:
    """Never runs: the worker under test records its runs instead of starting them."""


class Recorder(EventWakeups, ProcessWorker):
    type = "wakeup-test"
    hold_seconds = 0.0

    async def run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> ProcessWorkerResult:
        self.__dict__.setdefault("started", {})[flow_run.id] = time.monotonic()
        if task_status is not None:
            task_status.started(f"recorded:{flow_run.id}")  # an identifier: the run holds its slot
        await asyncio.sleep(self.hold_seconds)
        return ProcessWorkerResult(status_code=0, identifier="recorded")


@pytest.fixture
def timed_ask(request: pytest.FixtureRequest) -> Iterator[float]:
    seconds = getattr(request, "param", 60.0)
    with temporary_settings({PREFECT_WORKER_QUERY_SECONDS: seconds, PREFECT_WORKER_PREFETCH_SECONDS: 10}):
        yield seconds


async def pool_and_deployment(client: Any) -> tuple[str, Any]:
    pool = f"wakeup-{uuid.uuid4().hex[:8]}"
    await client.create_work_pool(
        WorkPoolCreate(
            name=pool, type="wakeup-test", base_job_template=ProcessWorker.get_default_base_job_template()
        )
    )
    deployment = await client.create_deployment(
        flow_id=await client.create_flow(noop), name=pool, work_pool_name=pool, entrypoint="x.py:noop"
    )
    return pool, deployment


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition`` holds; fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def started(worker: Recorder, listening: bool = True) -> Any:
    task = asyncio.create_task(worker.start())
    try:
        if listening:
            await until(lambda: worker.listening, 60, "the worker listening to the event stream")
        else:
            await until(lambda: worker._work_pool is not None, 60, "the worker synced")
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_run_is_picked_up_when_it_is_scheduled_not_at_the_next_timed_ask(
    prefect_server: None, timed_ask: float
) -> None:
    async def scenario() -> tuple[float, str]:
        async with get_client() as client:
            pool, deployment = await pool_and_deployment(client)
            async with started(Recorder(work_pool_name=pool, name="w", limit=2)) as worker:
                created = time.monotonic()
                run = await client.create_flow_run_from_deployment(deployment)
                await until(lambda: run.id in worker.__dict__.get("started", {}), 30, "the run picked up")
                state = (await client.read_flow_run(run.id)).state
                return worker.started[run.id] - created, state.type.value if state else ""

    waited, state = asyncio.run(scenario())
    assert waited < 15, f"picked up after {waited:.1f} s: by the {timed_ask:.0f} s timer, not the event"
    assert state == "PENDING", "the worker took the run (Prefect 3.8 names the state Submitting)"


def test_a_freed_slot_takes_the_next_run_at_once(prefect_server: None, timed_ask: float) -> None:
    async def scenario() -> list[float]:
        async with get_client() as client:
            pool, deployment = await pool_and_deployment(client)
            worker = Recorder(work_pool_name=pool, name="w", limit=1)
            worker.hold_seconds = 2.0
            async with started(worker):
                created = time.monotonic()
                runs = [await client.create_flow_run_from_deployment(deployment) for _ in range(2)]
                await until(lambda: len(worker.__dict__.get("started", {})) == 2, 40, "both runs picked up")
                return sorted(worker.started[run.id] - created for run in runs)

    first, second = asyncio.run(scenario())
    # One slot: the second waits for the first (held 2 s), then goes when the slot frees.
    assert second - first >= 2.0
    assert second < 20, f"second run after {second:.1f} s: it waited for the {60:.0f} s timer"


def test_a_run_being_cancelled_rings_the_cancel_check(prefect_server: None, timed_ask: float) -> None:
    async def scenario() -> bool:
        async with get_client() as client:
            pool, deployment = await pool_and_deployment(client)
            async with started(Recorder(work_pool_name=pool, name="w", limit=1)) as worker:
                run = await client.create_flow_run_from_deployment(deployment)
                await until(lambda: run.id in worker.__dict__.get("started", {}), 30, "the run picked up")
                await worker.cancelling.wait(0)  # forget the ring of connecting
                await client.set_flow_run_state(run.id, Running(), force=True)
                await client.set_flow_run_state(run.id, Cancelling(), force=True)
                return await worker.cancelling.wait(15)

    assert asyncio.run(scenario()), "no Cancelling event reached the worker within 15 s"


@pytest.mark.parametrize("timed_ask", [1.0], indirect=True)
def test_without_the_event_stream_the_worker_asks_every_poll_interval(
    prefect_server: None, timed_ask: float, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreachable(**_: Any) -> Any:
        raise ConnectionRefusedError("websocket refused by a proxy")

    monkeypatch.setattr(wakeup, "get_events_subscriber", unreachable)

    async def scenario() -> tuple[float, bool]:
        async with get_client() as client:
            pool, deployment = await pool_and_deployment(client)
            worker = Recorder(work_pool_name=pool, name="w", limit=1)
            async with started(worker, listening=False):
                await until(lambda: "not reachable" in caplog.text, 30, "the fallback announced")
                created = time.monotonic()
                run = await client.create_flow_run_from_deployment(deployment)
                await until(lambda: run.id in worker.__dict__.get("started", {}), 30, "the run picked up")
                return worker.started[run.id] - created, worker.listening

    with caplog.at_level(logging.WARNING):
        waited, listening = asyncio.run(scenario())
    assert not listening
    assert waited < 10
    assert "websocket refused by a proxy" in caplog.text and "every 1.0 s" in caplog.text


@pytest.mark.parametrize(
    ("poll", "prefetch", "expected"),
    [(1, 10, 5.0), (1, 5, 3.5), (0.1, 10, 1.0), (10, 10, 10.0), (1, 2, 1.4), (2, 10, 5.0)],
)
def test_the_safety_ask_stays_within_the_prefetch_and_health_windows(
    poll: float, prefetch: float, expected: float
) -> None:
    with temporary_settings({PREFECT_WORKER_QUERY_SECONDS: poll, PREFECT_WORKER_PREFETCH_SECONDS: prefetch}):
        assert safety_seconds() == pytest.approx(expected)


def test_rings_coalesce_until_handled() -> None:
    async def scenario() -> list[bool]:
        alarm = Alarm()
        alarm.ring()
        alarm.ring()
        return [await alarm.wait(1), await alarm.wait(0.05)]

    assert asyncio.run(scenario()) == [True, False]
