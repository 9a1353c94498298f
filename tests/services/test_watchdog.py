"""services/watchdog: a killed service of the project starts again; one stopped on purpose does not.

Real containers on the real engine, labelled as compose labels a project's services, and the
watchdog's own Docker client on the socket.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from services.watchdog.docker_api import DockerApi, DockerError
from services.watchdog.revive import Reviver, services_from

pytestmark = pytest.mark.timeout(120)
# Exits 0 on SIGTERM, like the stack's services under `docker stop`.
SERVICE = ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]


@pytest.fixture
def project(docker_engine: None) -> Iterator[str]:
    name = f"wdtest{uuid.uuid4().hex[:8]}"
    yield name
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def service(project: str, name: str, *labels: str) -> str:
    extra = [arg for label in labels for arg in ("--label", label)]
    return subprocess.run(
        ["docker", "run", "-d", "--label", f"com.docker.compose.project={project}",
         "--label", f"com.docker.compose.service={name}", *extra, "debian:bookworm-slim", *SERVICE],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def running(container: str) -> bool:
    return (
        subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True
        ).stdout.strip()
        == "true"
    )


def test_a_killed_service_starts_again_and_a_stopped_one_stays_stopped(project: str) -> None:
    killed = service(project, "prefect-worker")
    stopped = service(project, "prefect-server")
    unwatched = service(project, "prefect-deploy")
    oneoff = service(project, "postgres", "com.docker.compose.oneoff=True")
    other_project = service(f"{project}x", "prefect-worker")
    try:
        subprocess.run(
            ["docker", "kill", killed, unwatched, oneoff, other_project], check=True, capture_output=True
        )
        subprocess.run(["docker", "stop", "-t", "5", stopped], check=True, capture_output=True)
        said: list[str] = []
        reviver = Reviver(
            DockerApi(), project, services_from("", ("prefect-worker", "prefect-server", "postgres"))
        )
        reviver.log = said.append
        assert reviver.revive() == ["prefect-worker"]
        assert running(killed)
        assert not running(stopped), "the operator stopped it: it stays stopped"
        assert not running(unwatched) and not running(oneoff) and not running(other_project)
        assert said == [
            "prefect-worker was down (exit code 137, not stopped by an operator): started it again"
        ]
        assert reviver.revive() == [], "nothing left to do"
    finally:
        subprocess.run(["docker", "rm", "-f", other_project], capture_output=True)


def test_a_service_killed_for_memory_is_named_so(project: str) -> None:
    hog = subprocess.run(
        ["docker", "run", "-d", "--label", f"com.docker.compose.project={project}",
         "--label", "com.docker.compose.service=prefect-worker", "--memory", "16m", "--memory-swap", "16m",
         "debian:bookworm-slim", "sh", "-c", 'a=x; while true; do a="$a$a"; done'],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deadline = time.monotonic() + 30
    while running(hog) and time.monotonic() < deadline:
        time.sleep(0.5)
    said: list[str] = []
    assert Reviver(DockerApi(), project, frozenset({"prefect-worker"}), log=said.append).revive()
    assert said and "out of memory" in said[0], said


def test_an_engine_that_does_not_answer_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(DockerError, match="does not answer"):
        DockerApi(socket_path="/nonexistent/docker.sock").containers(["x=y"])


def test_services_to_watch_come_from_the_setting_or_the_default() -> None:
    assert services_from(" a, b ,,", ("x",)) == {"a", "b"}
    assert services_from("", ("x", "y")) == {"x", "y"}
