"""Runs picked up the moment they are scheduled, without asking the server every second.

Prefect's worker asks the server for due runs every PREFECT_WORKER_QUERY_SECONDS
(`WORKER_POLL_SECONDS`), and each ask writes the pool's and its deployments' last-polled rows: at
1 s that is about 5% of a core of an idle server, all day. A worker with `EventWakeups` also listens
to the server's event stream (`/api/events/out`) for the runs of its pool:

- a run entering a Scheduled-type state (Scheduled, Late, AwaitingRetry, ...) wakes the ask at once,
  and so does a slot of the worker's own freed by a finished run (a run waiting for it goes next);
- a run entering Cancelling wakes the worker's check for runs to cancel (`cancelling.wait`);
- while the stream is live, the timed ask only happens every `safety_seconds()`: a safety net for a
  lost event, and a run scheduled for later is still picked before it is due (70% of
  PREFECT_WORKER_PREFETCH_SECONDS, at most 5 s: 3.5 s in the stack, which sets 5 s). When the
  stream cannot be reached (an older server, a proxy without websockets, an API key without the
  scope), the worker asks every WORKER_POLL_SECONDS as before, and tries the stream again every
  RETRY_SECONDS. The worker's healthcheck is unchanged: it is healthy while its asks succeed
  within 30 x WORKER_POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter
from prefect.settings import PREFECT_WORKER_PREFETCH_SECONDS, PREFECT_WORKER_QUERY_SECONDS

SAFETY_SECONDS = 5.0  # the timed ask while the stream is live; under the prefetch window
RETRY_SECONDS = 10.0  # between attempts to reach the stream
HEALTH_WINDOW_POLLS = 30  # Prefect's healthcheck: unhealthy after 30 intervals without an ask


def safety_seconds() -> float:
    """The slowest the timed ask may go: inside Prefect's prefetch window with room for the timed
    loop's jitter (up to 30% of a poll), and well within the healthcheck's window of 30 polls (a
    WORKER_POLL_SECONDS of 0.1 allows 3 s). The stack's 5 s prefetch gives 3.5 s."""
    poll = float(PREFECT_WORKER_QUERY_SECONDS.value())
    prefetch = float(PREFECT_WORKER_PREFETCH_SECONDS.value())
    return max(poll, min(SAFETY_SECONDS, prefetch * 0.7, poll * HEALTH_WINDOW_POLLS / 3))


def pool_run_events(pool_id: Any) -> EventFilter:
    """State changes of the flow runs of one pool (the pool is a related resource of each)."""
    return EventFilter(
        event=EventNameFilter(prefix=["prefect.flow-run."]),
        any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{pool_id}"]),
    )


def state_type(event: Any) -> str | None:
    state = event.payload.get("validated_state") if isinstance(event.payload, dict) else None
    return state.get("type") if isinstance(state, dict) else None


class Alarm:
    """Something to do now, or after a timeout at the latest; rings coalesce until handled."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """True when rung, False after ``timeout``; either way the alarm is reset."""
        try:
            await asyncio.wait_for(self._rung.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._rung.clear()


class EventWakeups:
    """Mixin for a Prefect worker (before the worker class in its bases): see the module's doc."""

    _listening: bool = False
    _last_ask: float = 0.0
    _wakeup_tasks: tuple[asyncio.Task[None], ...] = ()

    @property
    def scheduled(self) -> Alarm:
        return self.__dict__.setdefault("_scheduled_alarm", Alarm())

    @property
    def cancelling(self) -> Alarm:
        return self.__dict__.setdefault("_cancelling_alarm", Alarm())

    @property
    def listening(self) -> bool:
        """Whether the event stream is live: the timed polls can then be slow."""
        return self._listening

    async def get_and_submit_flow_runs(self) -> list[Any]:
        """Prefect's timed loop: asks only if the stream is down or the safety interval is over.
        Its first tick starts the listening beside it: a worker entered as a context manager
        without `start()` (tests, one-off calls) picks up nothing by itself, as before."""
        if not self._wakeup_tasks:
            self._wakeup_tasks = (
                asyncio.create_task(self._listen_forever()),
                asyncio.create_task(self._ask_when_woken_forever()),
            )
        if self._listening and time.monotonic() - self._last_ask < safety_seconds():
            return []
        return await self._ask()

    async def _ask(self) -> list[Any]:
        self._last_ask = time.monotonic()
        return await super().get_and_submit_flow_runs()  # type: ignore[misc]

    def _release_limit_slot(self, flow_run_id: Any) -> None:
        super()._release_limit_slot(flow_run_id)  # type: ignore[misc]
        self.scheduled.ring()  # a run waiting for this slot goes next, not at the next poll

    async def __aexit__(self, *exc_info: Any) -> None:
        tasks, self._wakeup_tasks = self._wakeup_tasks, ()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().__aexit__(*exc_info)  # type: ignore[misc]

    async def _ask_when_woken_forever(self) -> None:
        while True:
            await self.scheduled.wait()
            try:
                await self._ask()
            except Exception:  # the server is away: the timed loop keeps asking, with its back-off
                self._logger.debug("asking for scheduled runs after an event failed", exc_info=True)  # type: ignore[attr-defined]

    async def _pool_id(self) -> Any:
        """The pool's id, once the worker has synced with the server (it creates nothing)."""
        while getattr(self, "_work_pool", None) is None:
            await asyncio.sleep(0.5)
        return self._work_pool.id  # type: ignore[attr-defined]

    async def _listen_forever(self) -> None:
        logger = self._logger  # type: ignore[attr-defined]
        failures = 0
        while True:
            pool_id = await self._pool_id()
            try:
                async with get_events_subscriber(
                    filter=pool_run_events(pool_id), reconnection_attempts=2, reconnect_on_clean_close=True
                ) as events:
                    self._listening = True
                    failures = 0
                    logger.info(
                        "Listening to the server's events: runs start when scheduled; asking every %.1f s "
                        "as a safety net",
                        safety_seconds(),
                    )
                    # Anything scheduled or cancelled while not listening is handled now.
                    self.scheduled.ring()
                    self.cancelling.ring()
                    async for event in events:
                        kind = state_type(event)
                        if kind == "SCHEDULED":
                            self.scheduled.ring()
                        elif kind == "CANCELLING":
                            self.cancelling.ring()
            except Exception as exc:  # any failure means: poll instead
                failures += 1
                if failures == 1:
                    logger.warning(
                        "The server's event stream is not reachable (%s); asking for runs every %s s "
                        "instead, and trying the stream again every %.0f s",
                        str(exc) or type(exc).__name__,
                        PREFECT_WORKER_QUERY_SECONDS.value(),
                        RETRY_SECONDS,
                    )
            finally:
                self._listening = False
            await asyncio.sleep(RETRY_SECONDS)
