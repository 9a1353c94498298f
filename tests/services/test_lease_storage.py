"""services/server/lease_storage.py: a lease outlives the server process that granted it.

A restart is a new storage object on the same folder: it still knows the lease, its holder renews
it, and an expired one is reported for the repossessor to free.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from prefect.server.concurrency.lease_storage import ConcurrencyLimitLeaseMetadata

from services.server.lease_storage import LEASES_DIR_SETTING, ConcurrencyLeaseStorage


def test_a_lease_survives_a_restart_and_expires_only_when_not_renewed(tmp_path: Path) -> None:
    async def scenario() -> None:
        limit = uuid4()
        before = ConcurrencyLeaseStorage(tmp_path)
        held = await before.create_lease(
            [limit], timedelta(seconds=60), ConcurrencyLimitLeaseMetadata(slots=1)
        )
        lapsing = await before.create_lease(
            [limit], timedelta(seconds=0), ConcurrencyLimitLeaseMetadata(slots=1)
        )

        after = ConcurrencyLeaseStorage(tmp_path)  # the server restarted
        assert (await after.read_lease(held.id)).resource_ids == [limit]
        assert await after.renew_lease(held.id, timedelta(seconds=60)) is True
        await asyncio.sleep(0.05)
        assert await after.read_expired_lease_ids() == [lapsing.id], "only the unrenewed lease lapses"
        await after.revoke_lease(held.id)
        assert await ConcurrencyLeaseStorage(tmp_path).read_lease(held.id) is None

    asyncio.run(scenario())


def test_the_folder_comes_from_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEASES_DIR_SETTING, str(tmp_path / "leases"))
    assert ConcurrencyLeaseStorage().storage_path == tmp_path / "leases"


def test_compose_points_the_server_at_it_on_a_volume() -> None:
    from tests.support import REPO

    compose = (REPO / "docker-compose.yml").read_text()
    assert "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE: services.server.lease_storage" in compose
    assert "PLATFORM_LEASES_DIR: /var/lib/prefect-server/leases" in compose
    assert "- server-state:/var/lib/prefect-server" in compose
