"""The container contract, stated once: what every flow-run container can rely on.

The work pool's job template (services/init), the flow-run entrypoint (services/flow_runner), the
images (docker/*/Dockerfile) and docker-compose.yml all follow these values; the Dockerfiles and
the compose file cannot import Python, so tests/services/test_contract.py checks that they agree.
Standard library only.
"""

from __future__ import annotations

from typing import Final

# The host's flows/ folder, mounted read-only; PYTHONPATH holds its parent so `import flows` works.
FLOWS_DIR: Final = "/opt/prefect/flows"
# The shared data volume: DuckDB warehouse, persisted results, dbt target/ and logs/, dlt scratch.
DATA_DIR: Final = "/data"
# Where persisted task and flow results go on the data volume.
RESULTS_DIR: Final = f"{DATA_DIR}/results"
# The settings file a flow-run container reads at start (the host's .env, mounted read-only).
SETTINGS_FILE: Final = "/run/secrets/platform.env"
# The unprivileged user every flow run and the init run as (the images create it).
FLOW_UID: Final = 1000
# Settings a flow never receives, whatever the settings file holds.
NOT_FOR_FLOWS: Final = frozenset({"POSTGRES_PASSWORD"})
# Label on every flow-run container, so the platform can find its own containers.
FLOW_RUN_LABEL: Final = "prefect-platform.role"


def network_name(project: str) -> str:
    """The stack's network (fixed name: flow-run containers join it to reach the API)."""
    return project


def data_volume_name(project: str) -> str:
    """The stack's data volume (fixed name: flow-run containers mount it at DATA_DIR)."""
    return f"{project}-data"
