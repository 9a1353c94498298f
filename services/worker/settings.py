"""The settings a flow run receives: the host's .env, read at each run, minus the stack's own."""

from __future__ import annotations

import os
from pathlib import Path

from scripts.lib.envfile import parse
from services import contract
from services.ui_url import ui_url
from services.work_pools import HEARTBEAT_SECONDS

FLOW_CLIENT_RETRIES = 8


def flow_settings(settings_file: str | Path) -> dict[str, str]:
    """Non-empty settings of ``settings_file`` a flow may see, plus what the platform always sets.

    A missing file gives only the platform's values: the worker may run without a .env (tests, a
    worker-only host that passes settings another way)."""
    path = Path(settings_file)
    values = parse(path.read_text()) if path.is_file() else {}
    settings = {
        key: value
        for key, value in values.items()
        if value and key not in contract.NOT_FOR_FLOWS and not contract.is_reserved_env(key)
    }
    # Links in the run's logs (the warehouse lock names the run it waits for) open in a browser.
    settings.setdefault("PREFECT_UI_URL", ui_url(os.environ))
    # A run rides through a server restart or upgrade: each API call retries for ~8.5 min in all
    # (2, 4, ... 256 s) instead of Prefect's ~1 min (5 retries), after which the run would crash.
    settings.setdefault("PREFECT_CLIENT_MAX_RETRIES", str(FLOW_CLIENT_RETRIES))
    # Heartbeats let the zombie automation (services/init/automations.py) mark a vanished run Crashed.
    settings["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_SECONDS)
    return settings
