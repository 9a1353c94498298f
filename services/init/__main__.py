"""python -m services.init: the prefect-init one-shot (see services/init/__init__.py)."""

from __future__ import annotations

import json
import os

from prefect.client.orchestration import get_client

from services.init import log, setting
from services.init.automations import ensure_automations
from services.init.data_volume import prepare_data_volume
from services.init.ecs_pool import ensure_ecs_pool
from services.init.result_storage import ensure_result_storage
from services.init.work_pool import ensure_work_pool
from services.wait_for import wait_for_api

# `docker compose restart` starts the init while the server restarts: wait for it, bounded.
SERVER_WAIT_SECONDS = 180


def main() -> None:
    prepare_data_volume()
    api_url = os.environ.get("PREFECT_API_URL", "http://prefect-server:4200/api")
    wait_for_api(api_url, SERVER_WAIT_SECONDS, "prefect-init")
    with get_client(sync_client=True) as client:
        ensure_work_pool(client)
        ensure_ecs_pool(client)  # only when ECS_WORK_POOL_NAME is set
        ensure_automations(client)
        ensure_result_storage(client)  # S3 when RESULTS_S3_URI is set, else the data volume
    log(f"done {json.dumps({'pool': setting('PREFECT_WORK_POOL_NAME')})}")


if __name__ == "__main__":
    main()
