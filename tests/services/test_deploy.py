"""services/deploy: entrypoints imported before anything is registered; strict parameter schemas.

Against a real Prefect server, with a flows folder nobody on the team wrote (a temporary one).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL

from services.deploy.__main__ import (
    check_entrypoints,
    make_parameters_strict,
    register_deployments,
    wait_for_server,
)

pytestmark = pytest.mark.timeout(300)

GREETER = """\
from prefect import flow


@flow
def greet(name: str = "world", times: int = 1) -> str:
    return f"hello {name}" * times
"""


def write_project(root: Path, pool: str, files: dict[str, str], entrypoints: list[str]) -> Path:
    flows = root / "flows"
    flows.mkdir()
    for name, text in files.items():
        (flows / name).write_text(text)
    deployments = "\n".join(
        f"  - name: d{i}\n    entrypoint: {entrypoint}\n    work_pool: {{name: {pool}}}"
        for i, entrypoint in enumerate(entrypoints)
    )
    (flows / "prefect.yaml").write_text(f"name: test\npull: []\ndeployments:\n{deployments}\n")
    return flows


def test_an_entrypoint_that_cannot_be_imported_is_named_with_file_and_line(tmp_path: Path) -> None:
    broken = "from prefect import flow\n\n\n@flow\ndef f() -> None:\n    return (\n"
    flows = write_project(
        tmp_path,
        "p",
        {
            "ok.py": GREETER,
            "broken.py": broken,
            "needs.py": "import not_installed_anywhere\n" + GREETER.replace("greet", "f"),
        },
        ["ok.py:greet", "broken.py:f", "needs.py:f"],
    )
    errors = check_entrypoints(flows)
    assert len(errors) == 2, errors
    assert errors[0].startswith("broken.py:f: flows/broken.py, line 6: SyntaxError"), errors
    assert errors[1].startswith("needs.py:f: flows/needs.py, line 1: ModuleNotFoundError"), errors


def test_registered_deployments_refuse_unknown_parameters_at_creation(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = f"deploy-test-{uuid.uuid4().hex[:8]}"
    flows = write_project(tmp_path, pool, {"greeter.py": GREETER}, ["greeter.py:greet"])
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="docker"))

    anyio.run(create_pool)
    assert check_entrypoints(flows) == []
    names = register_deployments(flows)
    assert names == ["greet/d0"]
    assert make_parameters_strict(names) == 1
    assert make_parameters_strict(names) == 0, "idempotent"

    async def create_runs() -> str:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("greet/d0")
            await client.create_flow_run_from_deployment(deployment.id, parameters={"name": "x", "times": 2})
            try:
                await client.create_flow_run_from_deployment(deployment.id, parameters={"nmae": "typo"})
            except PrefectHTTPStatusError as exc:
                return f"{exc.response.status_code} {exc.response.text}"
            return "created"

    refusal = anyio.run(create_runs)
    assert refusal.startswith("409") and "nmae" in refusal, refusal


def test_it_waits_for_the_pool_the_init_creates_and_names_one_that_never_comes(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = f"deploy-wait-{uuid.uuid4().hex[:8]}"
    api = PREFECT_API_URL.value()
    monkeypatch.setenv("PREFECT_API_URL", api)

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="docker"))

    later = threading.Timer(1.5, lambda: anyio.run(create_pool))
    later.start()
    started = time.monotonic()
    wait_for_server(api, pool, timeout=60)
    assert 1.4 < time.monotonic() - started < 30
    later.join()
    with pytest.raises(SystemExit, match=f"the work pool {pool}-missing still does not exist after 1 s"):
        wait_for_server(api, f"{pool}-missing", timeout=1)
