"""Concurrency leases that survive a restart of the server: Prefect's file-based lease storage, in
a folder on the volume of the server's state (PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE names this
module in docker-compose.yml).

Prefect keeps a lease per held concurrency slot (the warehouse lock, a deployment's one-at-a-time
slot) and, by default, keeps them in the server's memory. A restart then forgets every lease while
the database still counts the slots as taken: nothing ever releases them and the next ELT waits
for its lock until it times out. Kept on a volume, a lease outlives the restart: its holder goes on
renewing it, or it expires and the server's repossessor frees the slot. A file per lease and no
other process: no Redis to run on a 2 GiB host.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect.server.concurrency.lease_storage import filesystem

LEASES_DIR_SETTING = "PLATFORM_LEASES_DIR"
DEFAULT_LEASES_DIR = "/var/lib/prefect-server/leases"


class ConcurrencyLeaseStorage(filesystem.ConcurrencyLeaseStorage):
    """Prefect's filesystem lease storage, at PLATFORM_LEASES_DIR instead of under PREFECT_HOME
    (a tmpfs in the stack)."""

    def __init__(self, storage_path: Path | None = None) -> None:
        super().__init__(storage_path or Path(os.environ.get(LEASES_DIR_SETTING) or DEFAULT_LEASES_DIR))
