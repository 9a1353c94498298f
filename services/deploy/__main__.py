"""python -m services.deploy: register flows/prefect.yaml's deployments (the prefect-deploy one-shot).

1. Imports every deployment's entrypoint first: an error names its file and line, and nothing is
   registered (the server keeps the deployments it had). Compose starts this one-shot with the
   server and the init, so these imports (the flows' libraries: seconds) overlap their start.
2. Waits for the API and for the work pool the deployments target (prefect-init creates it).
3. `prefect deploy --all` from the mounted flows folder.
4. Makes each deployment's parameter schema strict (no unknown parameters), so a run with a
   misspelled parameter is refused when it is created, naming it, instead of failing in a container.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from services.contract import FLOWS_DIR
from services.flow_code import describe

WAIT_SECONDS = 180.0  # for the API and the work pool


def log(message: str) -> None:
    print(f"prefect-deploy: {message}", flush=True)


def deployments(flows_dir: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((flows_dir / "prefect.yaml").read_text()) or {}
    return list(spec.get("deployments") or [])


def check_entrypoints(flows_dir: Path) -> list[str]:
    """Imports each deployment's flow as the flow run will; the errors, each naming file and line."""
    from prefect.flows import load_flow_from_entrypoint

    errors = []
    for entrypoint in sorted({d["entrypoint"] for d in deployments(flows_dir) if d.get("entrypoint")}):
        path, _, name = entrypoint.rpartition(":")
        try:
            # No placeholder: Prefect would otherwise stand in a flow read from the file's syntax.
            target = f"{flows_dir / path}:{name}" if path else entrypoint
            load_flow_from_entrypoint(target, use_placeholder_flow=False)
        except Exception as exc:
            errors.append(f"{entrypoint}: {describe(exc, flows_dir, flows_dir / path if path else None)}")
    return errors


def register_deployments(flows_dir: Path) -> list[str]:
    """`prefect --no-prompt deploy --all` in ``flows_dir``, through Prefect's CLI in this process:
    Prefect and the flows' own imports are already loaded (check_entrypoints); a second interpreter
    importing them again cost 4-5 s of every stack start on 2 cores."""
    from prefect.cli import app

    output, errors = io.StringIO(), io.StringIO()
    argv, cwd = sys.argv, Path.cwd()
    code: int | str | None = 0
    try:
        os.chdir(flows_dir)
        sys.argv = ["prefect", "--no-prompt", "deploy", "--all"]
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
            app()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
        os.chdir(cwd)
    if code not in (0, None):
        print(output.getvalue(), errors.getvalue(), sep="\n", file=sys.stderr)
        sys.exit(
            "prefect-deploy: `prefect deploy --all` failed in flows/ (output above): fix the file it "
            "names, or flows/prefect.yaml"
        )
    return [line.split("'")[1] for line in output.getvalue().splitlines() if "Deployment '" in line]


def make_parameters_strict(names: list[str]) -> int:
    """additionalProperties: false on each registered deployment's parameter schema."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    changed = 0
    with get_client(sync_client=True) as client:
        for name in names:
            deployment = client.read_deployment_by_name(name)
            schema = dict(deployment.parameter_openapi_schema or {})
            if schema.get("additionalProperties") is False:
                continue
            schema["additionalProperties"] = False
            client.update_deployment(deployment.id, DeploymentUpdate(parameter_openapi_schema=schema))
            changed += 1
    return changed


def wait_for_server(api_url: str, pool: str | None, timeout: float = WAIT_SECONDS) -> None:
    """Until the API answers and ``pool`` exists; exits naming what did not come within ``timeout``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from services.wait_for import wait_for_api, wait_until

    if not api_url:
        return  # no API configured: Prefect's own error names it
    started = time.monotonic()
    wait_for_api(api_url, timeout, "prefect-deploy")
    if not pool:
        return
    with get_client(sync_client=True) as client:

        def pool_exists() -> bool:
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                return False
            return True

        waiting = f"waiting for prefect-init to create the work pool {pool}"
        left = timeout - (time.monotonic() - started)
        if not wait_until(pool_exists, left, waiting, log, interval=0.5, done=f"the work pool {pool} exists"):
            sys.exit(
                f"prefect-deploy: the work pool {pool} still does not exist after {timeout:.0f} s: "
                "prefect-init creates it (docker compose logs prefect-init)"
            )


def main() -> None:
    flows_dir = Path(FLOWS_DIR)
    if errors := check_entrypoints(flows_dir):
        for error in errors:
            print(f"prefect-deploy: cannot import {error}", file=sys.stderr)
        sys.exit("prefect-deploy: nothing registered; fix the file and line above, then run ./scripts/deploy")
    from prefect.settings import PREFECT_API_URL

    wait_for_server(PREFECT_API_URL.value() or "", os.environ.get("PREFECT_WORK_POOL_NAME"))
    names = register_deployments(flows_dir)
    make_parameters_strict(names)
    log(f"deployments registered from flows/prefect.yaml: {', '.join(names) or '(none reported)'}")


if __name__ == "__main__":
    main()
