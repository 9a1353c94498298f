"""The Docker work pool: services/work_pools/docker.json rendered with this stack's settings."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound

from services import contract
from services.init import log, setting

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "work_pools"
# Seconds between a flow run's heartbeats; the zombie automation waits four of them.
HEARTBEAT_SECONDS = 30
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def template_values() -> dict[str, str]:
    """What the template's ${NAME} placeholders stand for: the contract, then the stack's settings."""
    platform_dir = setting("PLATFORM_DIR").rstrip("/")
    if not platform_dir.startswith("/"):
        sys.exit(f"prefect-init: PLATFORM_DIR must be an absolute host path, got {platform_dir!r}")
    project = setting("COMPOSE_PROJECT_NAME")
    return {
        "FLOWS_DIR": contract.FLOWS_DIR,
        "DATA_DIR": contract.DATA_DIR,
        "SETTINGS_FILE": contract.SETTINGS_FILE,
        "FLOW_RUN_LABEL": contract.FLOW_RUN_LABEL,
        "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        # Bind mounts are resolved by the host's engine: host paths, not this container's.
        "PLATFORM_DIR": platform_dir,
        "PLATFORM_NETWORK": contract.network_name(project),
        "PLATFORM_DATA_VOLUME": contract.data_volume_name(project),
        "FLOW_RUN_IMAGE": setting("FLOW_RUN_IMAGE"),
        "FLOW_RUN_MEMORY_LIMIT": setting("FLOW_RUN_MEMORY_LIMIT"),
    }


def render(value: Any, values: dict[str, str]) -> Any:
    """``value`` with every ${NAME} in its strings (dict keys included) replaced; unknown names fail."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                sys.exit(f"prefect-init: the work pool template uses ${{{name}}}, which has no value")
            return values[name]

        return PLACEHOLDER.sub(substitute, value)
    if isinstance(value, list):
        return [render(item, values) for item in value]
    if isinstance(value, dict):
        return {render(key, values): render(item, values) for key, item in value.items()}
    return value


def desired_job_template(pool_type: str = "docker") -> dict[str, Any]:
    template = json.loads((TEMPLATES_DIR / f"{pool_type}.json").read_text())
    return render(template, template_values())


def ensure_work_pool(client: Any) -> None:
    name = setting("PREFECT_WORK_POOL_NAME")
    template = desired_job_template()
    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type="docker", base_job_template=template))
        log(f"work pool {name!r} created (type docker)")
        return
    if pool.type != "docker":
        sys.exit(f"prefect-init: work pool {name!r} exists with type {pool.type!r}, not docker; delete it")
    if pool.base_job_template == template:
        log(f"work pool {name!r} unchanged")
        return
    client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    log(f"work pool {name!r} base job template updated")
