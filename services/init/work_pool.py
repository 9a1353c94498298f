"""The Docker work pool: services/work_pools/docker.json rendered with this stack's settings."""

from __future__ import annotations

import sys
from typing import Any

from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound

from services.init import log, setting
from services.work_pools import TemplateError, job_template, template_values


def desired_job_template(pool_type: str = "docker") -> dict[str, Any]:
    try:
        return job_template(pool_type, template_values(setting))
    except TemplateError as exc:
        sys.exit(f"prefect-init: {exc}")


def ensure_work_pool(client: Any) -> None:
    upsert_work_pool(client, setting("PREFECT_WORK_POOL_NAME"), "docker", desired_job_template())


def upsert_work_pool(client: Any, name: str, pool_type: str, template: dict[str, Any]) -> None:
    """The pool ``name`` exists with ``template``: created, updated, or left as it is."""
    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type=pool_type, base_job_template=template))
        log(f"work pool {name!r} created (type {pool_type})")
        return
    if pool.type != pool_type:
        sys.exit(
            f"prefect-init: work pool {name!r} exists with type {pool.type!r}, not {pool_type}; delete it"
        )
    if pool.base_job_template == template:
        log(f"work pool {name!r} unchanged")
        return
    # Also undoes an edit made in the UI: the template is code.
    client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    log(f"work pool {name!r} base job template updated")
