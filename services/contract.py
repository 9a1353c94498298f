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
# Each flow run's working directory: empty and writable when the run starts (the container's own
# layer, so it goes with the container), while the code stays read-only at FLOWS_DIR.
SCRATCH_DIR: Final = "/scratch"
# The command of every flow-run container: Prefect's engine, entered in SCRATCH_DIR once the flow
# is loaded (services/flow_runner/engine.py). Fixed by the work pool's template.
FLOW_RUN_COMMAND: Final = "python3 /opt/platform/services/flow_runner/engine.py"
# Where persisted task and flow results go on the data volume.
RESULTS_DIR: Final = f"{DATA_DIR}/results"
# The host's .env as the worker sees it (mounted read-only): at each run the worker passes its
# settings, minus NOT_FOR_FLOWS, to the flow-run container's environment. No flow mounts it.
SETTINGS_FILE: Final = "/run/secrets/platform.env"
# The unprivileged user every flow run and the init run as (the images create it).
FLOW_UID: Final = 1000
# Settings a flow never receives, whatever the settings file holds: the stack's own secrets and
# host facts, which no flow needs.
NOT_FOR_FLOWS: Final = frozenset({"POSTGRES_PASSWORD", "PLATFORM_DIR", "COMPOSE_PROJECT_NAME"})
# Environment variables a job may not set: the platform sets them (API address and credentials,
# the run's identity) or they change what code the interpreter loads.
RESERVED_ENV: Final = frozenset(
    {"PATH", "HOME", "USER", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PREFECT_HOME"}
)
RESERVED_ENV_PREFIXES: Final = ("PREFECT_API_", "PREFECT__", "LD_")


def is_reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


# Label on every flow-run container, so the platform can find its own containers.
FLOW_RUN_LABEL: Final = "prefect-platform.role"


def network_name(project: str) -> str:
    """The stack's network (fixed name: flow-run containers join it to reach the API)."""
    return project


def data_volume_name(project: str) -> str:
    """The stack's data volume (fixed name: flow-run containers mount it at DATA_DIR)."""
    return f"{project}-data"
