"""Builds the dbt shop project (flows/dbt/shop) with prefect-dbt's PrefectDbtRunner: one task per node.

``dbt build`` runs models and their tests in dependency order; a failing test fails the build,
skips what depends on it, and fails this task with the test's name in the message. dbt writes its
target/ and logs/ under DATA_DIR (flows/ is read-only in the stack); keeping target/ between runs
lets dbt parse partially, which is most of a small project's start-up time.

The whole build is cached on (raw data version, dbt project files, target, schemas): re-running
with no new raw load and no project change reuses the previous result instead of rebuilding.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from flows.retry import retry_on_transient_error
from flows.settings import EltSettings
from flows.warehouses import Warehouse

DBT_PROJECT_DIR = Path(__file__).resolve().parent / "dbt" / "shop"


def dbt_project_hash(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """Hash of every file the build depends on, so an edited model invalidates the cache."""
    digest = hashlib.sha256()
    for path in sorted(project_dir.rglob("*")):
        if path.is_file() and path.suffix in {".sql", ".yml", ".yaml", ".csv", ".md"}:
            digest.update(str(path.relative_to(project_dir)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Sets variables for the dbt invocation (profiles.yml reads them) and restores them after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _mart_relations(manifest: Any) -> dict[str, str]:
    """Model name -> relation name of the models under models/marts."""
    return {
        node.name: node.relation_name
        for node in manifest.nodes.values()
        if node.resource_type == "model"
        and len(node.fqn) > 1
        and node.fqn[1] == "marts"
        and node.relation_name
    }


def mart_row_counts(warehouse: Warehouse, relations: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    connection = warehouse.connect()
    try:
        cursor = connection.cursor()
        for name, relation in sorted(relations.items()):
            cursor.execute(f"select count(*) from {relation}")
            counts[name] = int(cursor.fetchone()[0])
    finally:
        connection.close()
    return counts


def run_dbt_build(
    warehouse: Warehouse, raw_schema: str, analytics_schema: str, full_refresh: bool = False
) -> dict[str, Any]:
    """``dbt build`` of the whole project; returns node statuses and mart row counts."""
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    work = EltSettings.from_env().dbt_work_dir(DBT_PROJECT_DIR.name, warehouse.dbt_target, analytics_schema)
    settings = PrefectDbtSettings(
        project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target_path=work / "target"
    )
    runner = PrefectDbtRunner(settings=settings, raise_on_failure=True)
    # No ANSI colours: dbt's lines become Prefect log records, shown as text in the UI.
    args = ["--no-use-colors", "build", "--target", warehouse.dbt_target, "--log-path", str(work / "logs")]
    if full_refresh:
        args.append("--full-refresh")
    env = {**warehouse.dbt_env(), "ELT_RAW_SCHEMA": raw_schema, "ELT_ANALYTICS_SCHEMA": analytics_schema}
    try:
        with _environment(env):
            result = runner.invoke(args)
    finally:
        warehouse.release()
    statuses: dict[str, int] = {}
    for node_result in result.result.results:
        status = str(node_result.status)
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "target": warehouse.dbt_target,
        "schema": analytics_schema,
        "node_statuses": statuses,
        "marts": _mart_relations(runner.manifest),
    }


# Timeout and backoff come from the run's settings: the flow applies them with .with_options().
@task(
    name="transform",
    retries=2,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient_error,
    # Cache key: everything the build's output depends on. The Warehouse object is left out (it
    # holds secrets and its identity is in `target`); the flow refreshes the cache when the marts
    # are missing, e.g. after the warehouse file was deleted.
    cache_policy=(INPUTS - "warehouse") + TASK_SOURCE,
    cache_expiration=timedelta(days=7),
    persist_result=True,
)
def transform(
    warehouse: Warehouse,
    target: str,
    raw_schema: str,
    analytics_schema: str,
    raw_version: str | None,
    project_hash: str,
    full_refresh: bool = False,
) -> dict[str, Any]:
    logger = get_run_logger()
    logger.info(
        "dbt build on %s, raw schema %s -> %s (raw version %s)",
        target,
        raw_schema,
        analytics_schema,
        raw_version,
    )
    summary = run_dbt_build(warehouse, raw_schema, analytics_schema, full_refresh)
    logger.info("dbt build finished: %s", summary["node_statuses"])
    return summary
