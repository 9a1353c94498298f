"""prefect-ops: the day-2 operations that must run inside the stack, next to its data.

The host commands (scripts/backup, restore, upgrade, status; code in scripts/lib/) are standard
library only and drive Docker; what needs Prefect's client, DuckDB or the data volume runs here, in
the one-shot `prefect-ops` compose service (the flow-run image, which has both, as uid 1000 with the
data volume at /data), started with `docker compose run --rm -T prefect-ops python3 -m services.ops`:

- data_volume: a consistent tar stream of the data volume (under the warehouse's write lock) and
  the staged, reversible restore of one;
- warehouse_lock: that lock, the ELT's own global concurrency limit;
- runs: settling runs that a restore left Running, the self-check run after an upgrade;
- schema: whether a database revision is one this Prefect knows (no restore of a newer schema);
- probe: the facts ./scripts/status reports from the API and the volume, as JSON.

Stdout carries data (a tar stream, JSON); progress goes to stderr. Never imports flows/.
"""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(f"prefect-ops: {message}", file=sys.stderr, flush=True)
