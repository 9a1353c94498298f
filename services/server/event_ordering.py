"""Causal ordering of events for automations that survives a restart of the server
(PREFECT_SERVER_EVENTS_CAUSAL_ORDERING names this module in docker-compose.yml).

Prefect's triggers process an event that declares it `follows` another (a work pool's not-ready
after its ready, a flow run's Running after its Pending) only once they have seen that leader.
What they have seen is kept in the server's memory: after a restart, every event whose leader came
before the restart sits on a wait list for 15 minutes. Found by the fault suite: the worker
stopped a minute after a `docker compose restart`, and the pool's not-ready event reached the
worker-down automation only 15 minutes later, so no alert came.

This ordering is Prefect's in-memory one, plus: a leader that the database holds and that this
server received before it started counts as seen. The previous server process handled it (or it
is gone with that process; waiting would not bring it back).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import sqlalchemy as sa
from prefect.server.database import provide_database_interface
from prefect.server.events.ordering import memory
from prefect.server.events.schemas.events import Event

STARTED = datetime.now(UTC)  # imported by services/server/__main__.py before the app starts


async def received_before_start(event_id: UUID) -> bool:
    db = provide_database_interface()
    async with db.session_context() as session:
        received = await session.scalar(sa.select(db.Event.received).where(db.Event.id == event_id))
    if received is None:
        return False
    if received.tzinfo is None:  # SQLite hands back naive UTC
        received = received.replace(tzinfo=UTC)
    return received < STARTED


class CausalOrdering(memory.CausalOrdering):
    """Prefect's in-memory causal ordering that knows about the events of earlier server processes."""

    # Own singletons: the parent's would hand back a plain in-memory instance for the same scope.
    _instances: dict[str, memory.CausalOrdering] = {}  # type: ignore[assignment]
    _locks: dict = {}  # type: ignore[type-arg]

    async def event_has_been_seen(self, event: UUID | Event) -> bool:
        if await super().event_has_been_seen(event):
            return True
        event_id = event.id if isinstance(event, Event) else event
        if await self.event_has_started_processing(event_id):
            return False  # in flight in this process: Prefect waits for it
        if await received_before_start(event_id):
            async with self._lock:
                self._seen_events[event_id] = True
            return True
        return False
