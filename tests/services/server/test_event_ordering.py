"""services/server/event_ordering.py: after a restart, an event whose leader the previous server
process handled is processed at once; one whose leader has not arrived still waits for it.

Prefect's own database code on a throwaway SQLite database (the server's schema, created by
Prefect), the ordering called as Prefect's triggers call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from prefect.server.events.ordering import EventArrivedEarly
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

from services.server import event_ordering


@pytest.fixture
def database(tmp_path: Path) -> Iterator[None]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}):
        from prefect.server.database import provide_database_interface

        asyncio.run(provide_database_interface().create_db())
        yield


def event(name: str, received: datetime, follows: ReceivedEvent | None = None) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=received,
        received=received,
        event=name,
        resource={"prefect.resource.id": "prefect.work-pool.p", "prefect.resource.name": "p"},
        id=uuid4(),
        follows=follows.id if follows else None,
    )


async def stored(*events: ReceivedEvent) -> None:
    from prefect.server.database import provide_database_interface
    from prefect.server.events.storage.database import write_events

    async with provide_database_interface().session_context(begin_transaction=True) as session:
        await write_events(session, list(events))


async def processed_at_once(ordering: event_ordering.CausalOrdering, follower: ReceivedEvent) -> bool:
    async def handler(event: ReceivedEvent, depth: int = 0) -> None: ...

    try:
        async with ordering.preceding_event_confirmed(handler, follower):
            return True
    except EventArrivedEarly:
        return False


def test_a_leader_handled_before_the_restart_counts_as_seen(database: None) -> None:
    before = event_ordering.STARTED - timedelta(seconds=30)
    ready = event("prefect.work-pool.ready", before)
    not_ready = event("prefect.work-pool.not-ready", datetime.now(UTC), follows=ready)

    async def scenario() -> bool:
        await stored(ready)
        return await processed_at_once(event_ordering.CausalOrdering(f"t-{uuid4()}"), not_ready)

    assert asyncio.run(scenario())


def test_a_leader_not_yet_arrived_is_still_waited_for(database: None) -> None:
    missing = event("prefect.work-pool.ready", datetime.now(UTC))
    after_start = event("prefect.work-pool.ready", datetime.now(UTC) + timedelta(seconds=1))

    async def scenario() -> list[bool]:
        await stored(after_start)  # received by this process, not yet through the triggers
        ordering = event_ordering.CausalOrdering(f"t-{uuid4()}")
        return [
            await processed_at_once(ordering, event("prefect.work-pool.not-ready", datetime.now(UTC), f))
            for f in (missing, after_start)
        ]

    assert asyncio.run(scenario()) == [False, False]


def test_the_module_is_what_prefect_loads_from_the_setting() -> None:
    from prefect.server.events.ordering import CausalOrderingModule

    assert isinstance(event_ordering, CausalOrderingModule)
    assert event_ordering.CausalOrdering("x") is event_ordering.CausalOrdering("x")
    assert type(event_ordering.CausalOrdering("y")) is event_ordering.CausalOrdering
