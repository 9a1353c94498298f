"""The work pools' base job templates (`<type>.json` here) and the values of their ${NAME} placeholders.

The init registers the rendered template; the worker derives its job policy (services/worker/
job_policy.py) from the same values, so what the pool says and what the worker enforces agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services import contract

TEMPLATES_DIR = Path(__file__).resolve().parent
# Seconds between a flow run's heartbeats; the zombie automation waits four of them.
HEARTBEAT_SECONDS = 30
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


class TemplateError(ValueError):
    """A setting the template needs is missing or wrong."""


def template_values(setting: Callable[[str], str]) -> dict[str, str]:
    """What the ${NAME} placeholders stand for: the contract, then the stack's settings."""
    platform_dir = setting("PLATFORM_DIR").rstrip("/")
    if not platform_dir.startswith("/"):
        raise TemplateError(f"PLATFORM_DIR must be an absolute host path, got {platform_dir!r}")
    project = setting("COMPOSE_PROJECT_NAME")
    return {
        "FLOWS_DIR": contract.FLOWS_DIR,
        "DATA_DIR": contract.DATA_DIR,
        "SCRATCH_DIR": contract.SCRATCH_DIR,
        "FLOW_UID": str(contract.FLOW_UID),
        "FLOW_RUN_LABEL": contract.FLOW_RUN_LABEL,
        "FLOW_RUN_COMMAND": contract.FLOW_RUN_COMMAND,
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
                raise TemplateError(f"the work pool template uses ${{{name}}}, which has no value")
            return values[name]

        return PLACEHOLDER.sub(substitute, value)
    if isinstance(value, list):
        return [render(item, values) for item in value]
    if isinstance(value, dict):
        return {render(key, values): render(item, values) for key, item in value.items()}
    return value


def job_template(pool_type: str, values: dict[str, str]) -> dict[str, Any]:
    """The base job template of a pool type, rendered with ``values``."""
    return render(json.loads((TEMPLATES_DIR / f"{pool_type}.json").read_text()), values)
