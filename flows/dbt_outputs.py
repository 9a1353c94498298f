"""After a successful dbt build: its lineage as a page a person can open, and its artifacts kept.

Prefect's self-hosted UI has no asset graph, so the asset events the runs emit are invisible there.
After each successful ``dbt build`` (flows/dbt_build.py's run_project calls ``publish_dbt_outputs``):

1. dbt's docs site, ``dbt docs generate --static`` (one self-contained page with the lineage graph),
   reusing the build's parsed and compiled manifest, replaces ``DATA_DIR/dbt-docs/<project>/<target>-<schema>/
   index.html``. The proxy serves ``DATA_DIR/dbt-docs`` at ``https://PUBLIC_HOSTNAME/dbt-docs/`` to
   whoever holds the platform's credential (services/proxy/Caddyfile). The graph shows the sources
   (the raw tables dlt or Airbyte loaded), the models and their tests, and the exposures a project
   declares (the shop's: the ML step's customer_scores table, flows/dbt/shop/models/exposures.yml).
2. When the server's default result storage is remote (RESULTS_S3_URI: the S3Bucket block), the
   build's manifest.json and run_results.json, and the docs' catalog.json and page, are copied to
   ``dbt/<project>/<target>-<schema>/<flow run id>/`` there. Without it they persist on the data
   volume, in the build's target/ folder, as before.
3. An artifact ``dbt-docs-<project>`` on the run links the page (or names its file) and the copies.

Publishing never fails the build it follows: a problem is logged as a warning.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

DOCS_DIR_NAME = "dbt-docs"
BUILD_ARTIFACTS = ("manifest.json", "run_results.json")


def docs_page(data_dir: Path, project: str, target: str, schema: str) -> Path:
    return data_dir / DOCS_DIR_NAME / project / f"{target}-{schema}" / "index.html"


def generate_docs(invocation: Any, manifest: Any) -> Path:
    """Runs ``dbt docs generate --static --no-compile`` beside the build's target/; the folder it
    wrote.

    The build has just compiled every node it ran into ``manifest`` and written it to its
    manifest.json, so the page takes the compiled SQL from there: compiling the project again cost
    more than the build's own orchestration (27 s of 28 on a 600-node project under load, 0.4 s of
    0.7 on the shop's 36). What remains is the catalog's one query and the page itself.
    """
    from dbt.cli.main import dbtRunner

    from flows.dbt_runner import DbtRunError, ProjectLog, _global_flags, run_logger

    # Its own target folder, holding a copy of the build's manifest.json (the page is made from the
    # file), so the build's target/ stays the build's.
    docs = replace(invocation, run_dir=invocation.run_dir / "docs")
    target = docs.run_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(invocation.run_dir / "target" / "manifest.json", target / "manifest.json")
    result = dbtRunner(manifest=manifest, callbacks=[ProjectLog(run_logger())]).invoke(
        [*_global_flags(), "docs", "generate", "--static", "--no-compile", *docs.flags()]
    )
    if not result.success:
        raise DbtRunError(f"dbt docs generate failed: {result.exception}")
    return target


def _replace_file(source: Path, destination: Path) -> None:
    """Copies ``source`` over ``destination`` atomically (readers see the old page or the new one)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=".index-")
    os.close(fd)
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, destination)


def copy_to_result_storage(files: dict[str, Path], prefix: str) -> str | None:
    """Writes ``files`` under ``prefix`` of the default result storage when it is remote; its URL."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import get_default_result_storage

    storage = get_default_result_storage()
    if isinstance(storage, LocalFileSystem):
        return None
    for name, path in files.items():
        storage.write_path(f"{prefix}/{name}", path.read_bytes())
    bucket, folder = getattr(storage, "bucket_name", None), getattr(storage, "bucket_folder", "")
    if bucket:
        return f"s3://{bucket}/{folder.strip('/') + '/' if folder else ''}{prefix}/"
    return f"{type(storage).__name__}: {prefix}/"


def docs_url(project: str, target: str, schema: str) -> str | None:
    """The page's address through the proxy, when the UI is served over HTTPS (a TLS mode)."""
    from prefect.settings import PREFECT_UI_URL

    ui = (PREFECT_UI_URL.value() or "").rstrip("/")
    match = re.match(r"^(https://[^/]+)", ui)
    return f"{match.group(1)}/{DOCS_DIR_NAME}/{project}/{target}-{schema}/" if match else None


def _artifact(project: str, page: Path, url: str | None, remote: str | None) -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return  # a build called outside a run (a test, a script): nothing to attach it to

    where = (
        f"[Open the docs and lineage graph]({url}) (sign in with PREFECT_API_AUTH_STRING's user "
        "and password)."
        if url
        else f"On the data volume: `{page}`; served at `/dbt-docs/` through the proxy (TLS_MODE)."
    )
    lines = [f"# dbt docs of {project}", "", where]
    if remote:
        lines += ["", f"Build artifacts (manifest, run results, catalog, docs page): `{remote}`"]
    create_markdown_artifact(
        key="dbt-docs-" + re.sub(r"[^a-z0-9-]", "-", project.lower()),
        markdown="\n".join(lines) + "\n",
        description=f"dbt docs (lineage) of the {project} project's build",
    )


def _publish(invocation: Any, project: str, schema: str, outcome: Any) -> None:
    from flows.settings import EltSettings

    docs_target = generate_docs(invocation, outcome.manifest)
    page = docs_page(EltSettings.from_env().data_dir, project, invocation.target, schema)
    _replace_file(docs_target / "static_index.html", page)
    build_target = invocation.run_dir / "target"
    files = {name: build_target / name for name in BUILD_ARTIFACTS}
    files.update({"catalog.json": docs_target / "catalog.json", "index.html": page})
    remote = copy_to_result_storage(
        {name: path for name, path in files.items() if path.is_file()},
        f"dbt/{project}/{invocation.target}-{schema}/{_run_id()}",
    )
    _artifact(project, page, docs_url(project, invocation.target, schema), remote)


def _run_id() -> str:
    from datetime import UTC, datetime

    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context and context.flow_run:
        return str(context.flow_run.id)
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def publish_dbt_outputs(invocation: Any, project: str, command: str, schema: str, outcome: Any) -> None:
    """After a successful ``dbt build``: the docs page, the artifacts' copies, the run's artifact."""
    if command != "build" or not outcome.success:
        return
    from flows.dbt_runner import run_logger

    logger = run_logger()
    try:
        _publish(invocation, project, schema, outcome)
    except Exception as exc:  # the build succeeded; its docs are a by-product
        logger.warning("Could not publish the dbt docs and artifacts of %s: %s", project, exc)
    else:
        logger.info("dbt docs of %s written (lineage page, artifact dbt-docs-%s)", project, project)
