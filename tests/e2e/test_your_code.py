"""End to end: a team's own code runs on the platform as README says, and two stacks share a host.

A new flow with a Python dependency that is not in the image yet, in README's three steps:
a file under flows/, a deployment in flows/prefect.yaml, `uv add --group flows PACKAGE`, then
./scripts/up (which rebuilds the flow-run image). A second stack with its own project name and
port runs beside the first; taking it down leaves the first one healthy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.stack import PrefectApi, Stack, copy_checkout, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

NEW_FLOW = '''\
"""A team's flow: greets with an emoji, using a package the platform does not ship."""

from pathlib import Path

import emoji
from prefect import flow, get_run_logger


@flow
def greet(name: str = "team") -> str:
    message = emoji.emojize(f"hello {name} :thumbs_up:")
    Path("greeting.txt").write_text(message)  # a relative path, as on a laptop
    get_run_logger().info("greeting=%s", message)
    return message
'''
NEW_DEPLOYMENT = """
  - name: hello
    entrypoint: greet.py:greet
    work_pool: *stack_pool
"""


def uv() -> list[str]:
    return [found] if (found := shutil.which("uv")) else [sys.executable, "-m", "uv"]


@pytest.fixture(scope="module")
def first(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("clone")
    copy_checkout(root)
    with running(Stack(root), request) as stack:
        yield stack


def test_a_new_flow_with_a_new_dependency_runs_after_the_three_documented_steps(first: Stack) -> None:
    # 1. the flow, 2. its deployment, 3. its dependency; then ./scripts/up.
    (first.root / "flows" / "greet.py").write_text(NEW_FLOW)
    with (first.root / "flows" / "prefect.yaml").open("a") as spec:
        spec.write(NEW_DEPLOYMENT)
    subprocess.run([*uv(), "add", "--quiet", "--group", "flows", "emoji"], cwd=first.root, check=True)
    first.up()
    with first.client() as client:
        api = PrefectApi(client)
        run = api.wait(api.trigger("greet", "hello", {"name": "platform"}), timeout=300)
        assert run["state_type"] == "COMPLETED", run["state"]
        logs = api.logs_with(run["id"], "greeting=")
    assert any("greeting=hello platform 👍" in line for line in logs), logs


def test_a_second_stack_runs_beside_the_first_and_goes_without_harming_it(
    first: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("second")
    copy_checkout(root)
    second = Stack(root)
    try:
        second.up()
        assert second.image("prefect-server") != first.image("prefect-server")
        for stack in (first, second):
            with stack.client() as client:
                api = PrefectApi(client)
                run = api.wait(api.trigger("platform-check", "self-check"))
                assert run["state_type"] == "COMPLETED", (stack.project, run["state"])
    finally:
        second.down()
    with first.client() as client:
        api = PrefectApi(client)
        assert api.wait(api.trigger("platform-check", "self-check"))["state_type"] == "COMPLETED"
    running = first.compose("ps", "--status", "running", "--services").stdout.split()
    assert {"postgres", "prefect-server", "prefect-worker"} <= set(running), running
