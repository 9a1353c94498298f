"""The ``dbt`` flow (deployment ``dbt/build``): any dbt project in flows/dbt/<name>/, built on
the platform's warehouse with every node a Prefect task run.

    uv run python -m flows.dbt_build shop                       # like `dbt build` in flows/dbt/shop
    uv run python -m flows.dbt_build jaffle_shop --command seed --select raw_orders

Order of a run: the parameters are checked (unknown project, command, an option the command does
not take: the run fails before anything runs, saying what to pass instead), the warehouse's
settings are read, then under the warehouse's write lock the project is linked into its workspace
under DATA_DIR/dbt/<name>/ with the platform's profile (flows/dbt_project.py), its packages are
installed if they changed, and dbt runs once (flows/dbt_runner.py). A failed node fails the run,
named in its message; transient warehouse errors are retried.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows.dbt_project import DbtProjectError, DbtWorkspace, dbt_env, find_project
from flows.retry import retry_on_transient_error
from flows.settings import EltSettings, flow_timeout_seconds
from flows.warehouses import Warehouse, resolve_warehouse
from flows.warehouses.lock import warehouse_lock

Command = Literal["build", "run", "test", "seed", "snapshot"]
FULL_REFRESH_COMMANDS = ("build", "run", "seed")
SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _words(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [w for item in value for w in item.split()]


class DbtBuildRequest(BaseModel):
    """The flow's parameters, checked together before anything runs."""

    model_config = ConfigDict(extra="forbid")

    project: str
    command: Command = "build"
    select: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    full_refresh: bool = False
    vars: dict[str, Any] = Field(default_factory=dict)
    target_schema: str | None = None

    @field_validator("select", "exclude", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _words(value) if isinstance(value, str | list | type(None)) else value

    @field_validator("project")
    @classmethod
    def _known_project(cls, value: str) -> str:
        find_project(value)  # raises naming the projects there are
        return value

    @field_validator("target_schema")
    @classmethod
    def _schema_name(cls, value: str | None) -> str | None:
        if value is not None and not SCHEMA.match(value):
            raise ValueError(f"target_schema must be a plain identifier (letters, digits, _), got {value!r}")
        return value

    @model_validator(mode="after")
    def _options_fit_command(self) -> DbtBuildRequest:
        if self.full_refresh and self.command not in FULL_REFRESH_COMMANDS:
            raise ValueError(
                f"full_refresh does not apply to `dbt {self.command}`: pass it with "
                f"{', '.join(FULL_REFRESH_COMMANDS)}, or leave it false"
            )
        return self

    @property
    def schema_name(self) -> str:
        """The schema models are built in: the parameter, or the project's folder name."""
        return self.target_schema or re.sub(r"\W", "_", self.project).lower()

    def options(self) -> list[str]:
        options: list[str] = []
        if self.select:
            options += ["--select", *self.select]
        if self.exclude:
            options += ["--exclude", *self.exclude]
        if self.full_refresh:
            options.append("--full-refresh")
        return options


def dbt_threads(env: Mapping[str, str] | None = None) -> int | None:
    """DBT_THREADS: dbt's threads for every project (empty: the platform profile's value)."""
    raw = ((os.environ if env is None else env).get("DBT_THREADS") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"DBT_THREADS must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def run_project(
    project: str,
    warehouse: Warehouse,
    command: str,
    schema: str,
    options: list[str] | None = None,
    vars: Mapping[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    projects: Path | None = None,
) -> Any:
    """Links, profiles, installs packages and runs one dbt command of a project; returns DbtOutcome.

    The caller holds the warehouse's lock. Shared by this flow and the elt flow's transform.
    """
    from dbt.version import __version__ as dbt_version

    from flows.dbt_outputs import publish_dbt_outputs
    from flows.dbt_runner import DbtInvocation, environment, run_dbt, run_deps, run_logger

    logger = run_logger()
    workspace = DbtWorkspace.for_project(project, EltSettings.from_env().data_dir, projects)
    workspace.prepare(warehouse.kind, schema, dbt_threads())
    env = dbt_env({**warehouse.dbt_env(), **(extra_env or {})})
    invocation = DbtInvocation(
        project_dir=workspace.project_dir,
        profiles_dir=workspace.profiles_dir,
        profile=workspace.profile_name,
        target=warehouse.dbt_target,
        run_dir=workspace.run_dir(warehouse.dbt_target, schema),
        vars=vars,
        name=project,
    )
    try:
        with environment(env):
            if workspace.install_packages(run_deps, dbt_version, invocation.run_dir / "logs"):
                logger.info("Installed the packages of %s (%s)", project, workspace.packages_file)
            outcome = run_dbt(invocation, command, options or [])
            started = time.perf_counter()
            publish_dbt_outputs(invocation, project, command, schema, outcome)  # docs page, S3 copies
            outcome.publish_seconds = time.perf_counter() - started
            return outcome
    finally:
        warehouse.release()


@task(
    name="dbt-command",
    task_run_name="dbt {request.command} {request.project}",
    retries=2,
    retry_condition_fn=retry_on_transient_error,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def dbt_command(request: DbtBuildRequest, warehouse: Warehouse) -> dict[str, Any]:
    """One dbt command of one project; its nodes are task runs under this one."""
    outcome = run_project(
        request.project,
        warehouse,
        request.command,
        request.schema_name,
        options=request.options(),
        vars=request.vars,
    )
    if not outcome.statuses and (request.select or request.exclude):
        # dbt only warns ("Nothing to do"); a selection that matches nothing is almost always a typo.
        raise DbtProjectError(
            f"select {' '.join(request.select) or '(all)'} / exclude {' '.join(request.exclude) or '(none)'} "
            f"matches no {request.command} node of the project {request.project}: check the node names "
            "and dbt's selection syntax (https://docs.getdbt.com/reference/node-selection/syntax)."
        )
    return {
        "project": request.project,
        "command": request.command,
        "schema": request.schema_name,
        "node_statuses": dict(outcome.statuses),
        "parse_seconds": round(outcome.parse_seconds, 3),
        "run_seconds": round(outcome.run_seconds, 3),
        "docs_seconds": round(outcome.publish_seconds, 3),
    }


def _artifact_key(project: str) -> str:
    return "dbt-" + re.sub(r"[^a-z0-9-]", "-", project.lower())


@flow(name="dbt", timeout_seconds=flow_timeout_seconds())
def dbt_build(
    project: str,
    command: Command = "build",
    select: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    full_refresh: bool = False,
    vars: dict[str, Any] | None = None,
    target_schema: str | None = None,
) -> dict[str, Any]:
    """Runs one dbt command of the project in flows/dbt/<project>/ on the platform's warehouse.

    Args:
        project: the project's folder name under flows/dbt/, e.g. "shop".
        command: build (default), run, test, seed or snapshot.
        select: dbt node selection, e.g. "stg_orders+ tag:daily" (default: every node).
        exclude: nodes to leave out, same syntax.
        full_refresh: rebuild incremental models and reload seeds (build, run and seed only).
        vars: the project's variables, as dbt's --vars.
        target_schema: the schema to build in (default: the project's folder name).
    """
    request = DbtBuildRequest(
        project=project,
        command=command,
        select=select,
        exclude=exclude,
        full_refresh=full_refresh,
        vars=vars or {},
        target_schema=target_schema,
    )
    settings = EltSettings.from_env()
    dbt_threads()  # a bad DBT_THREADS fails here, before the lock
    warehouse = resolve_warehouse()
    logger = get_run_logger()
    logger.info(
        "dbt %s of %s into %s schema %s",
        request.command,
        request.project,
        warehouse.kind,
        request.schema_name,
    )
    started = time.perf_counter()
    with warehouse_lock(warehouse.kind, settings.lock_timeout_seconds):
        summary = dbt_command.with_options(
            retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_backoff_seconds),
            timeout_seconds=settings.transform_timeout_seconds,
        )(request, warehouse)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(summary["node_statuses"].items())) or "no nodes"
    create_markdown_artifact(
        key=_artifact_key(request.project),
        markdown=(
            f"# dbt {request.command} of {request.project}\n\n"
            f"Into `{warehouse.kind}` schema `{request.schema_name}` in {summary['seconds']:.1f} s: "
            f"{statuses}.\n"
        ),
        description=f"Outcome of dbt {request.command} of the {request.project} project",
    )
    return summary


def main() -> None:
    """`python -m flows.dbt_build PROJECT [--command C] [--select S] ...`, on the ephemeral server
    unless PREFECT_API_URL is set; prints the node statuses."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Run a dbt project of flows/dbt/ as the dbt flow.")
    parser.add_argument("project")
    parser.add_argument("--command", default="build")
    parser.add_argument("--select")
    parser.add_argument("--exclude")
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--vars", type=json.loads, help="JSON object")
    parser.add_argument("--target-schema")
    args = parser.parse_args()
    result = dbt_build(
        project=args.project,
        command=args.command,
        select=args.select,
        exclude=args.exclude,
        full_refresh=args.full_refresh,
        vars=args.vars,
        target_schema=args.target_schema,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
