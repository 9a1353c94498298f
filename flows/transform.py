"""The elt flow's transform: the shop project (flows/dbt/shop) built into analytics_<source>.

``dbt build`` runs models and their tests in dependency order, each node a Prefect task run under
this task (flows/dbt_runner.py); a failing test fails the build, skips what depends on it, and
fails this task naming the test. The project runs from its workspace under DATA_DIR/dbt/shop/
(flows/dbt_project.py), with target/ kept per warehouse target and schema so dbt parses partially.

The whole build is cached on (raw data version, dbt project files, target, schemas): re-running
with no new raw load and no project change reuses the previous result instead of rebuilding.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from flows.dbt_project import PROJECTS_DIR
from flows.retry import retry_on_transient_error
from flows.warehouses import Warehouse

SHOP_PROJECT = "shop"
DBT_PROJECT_DIR = PROJECTS_DIR / SHOP_PROJECT


def dbt_project_hash(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """Hash of the project's files and the platform's profile: an edit invalidates the cache."""
    digest = hashlib.sha256()
    for path in [PROJECTS_DIR / "profiles.yml", *sorted(project_dir.rglob("*"))]:
        if path.is_file() and path.suffix in {".sql", ".yml", ".yaml", ".csv", ".md"}:
            digest.update(str(path.relative_to(PROJECTS_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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
    """``dbt build`` of the shop project; returns node statuses and the marts' relations."""
    from flows.dbt_build import run_project

    outcome = run_project(
        SHOP_PROJECT,
        warehouse,
        "build",
        analytics_schema,
        options=["--full-refresh"] if full_refresh else [],
        extra_env={"ELT_RAW_SCHEMA": raw_schema},
        projects=PROJECTS_DIR,  # the platform's own project, wherever DBT_PROJECTS_DIR points
    )
    return {
        "target": warehouse.dbt_target,
        "schema": analytics_schema,
        "node_statuses": dict(outcome.statuses),
        "marts": _mart_relations(outcome.manifest),
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
