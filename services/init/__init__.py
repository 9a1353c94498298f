"""prefect-init: make the running server match the code. Run by the one-shot compose service.

Runs on the platform image (Prefect and prefect-docker only, no flow code):
1. the shared data volume is owned by the flow user (data_volume);
2. the Docker work pool exists with services/work_pools/docker.json, rendered with this stack's
   settings (work_pool);
   and, when ECS_WORK_POOL_NAME is set, the ECS pool with services/work_pools/ecs.json (ecs_pool);
3. the automations exist: runs whose heartbeat stopped marked Crashed, runs stuck Pending or Late
   ended, and, when ALERT_WEBHOOK_URL is set, failed/crashed runs and a pool without a worker
   alerted (automations);
4. the server's default result storage: an S3 bucket block when RESULTS_S3_URI is set, else the
   data volume (result_storage).
Registering the deployments of flows/prefect.yaml imports the team's code, so it is a separate
one-shot on the flow-run image (services/deploy). Every step is idempotent and says what it did.
"""

from __future__ import annotations

import os
import sys


def log(message: str) -> None:
    print(f"prefect-init: {message}", flush=True)


def setting(name: str) -> str:
    """A required setting from the environment (compose passes it from .env); exits naming it."""
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"prefect-init: {name} is not set; it comes from .env (see .env.example)")
    return value
