"""services/contract.py is the one statement of the container contract; the files that cannot
import it (Dockerfiles, docker-compose.yml, flows/prefect.yaml) must say the same."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import yaml

from services import contract
from tests.support import REPO

FLOW_RUNNER = (REPO / "docker" / "flow-runner" / "Dockerfile").read_text()
PLATFORM = (REPO / "docker" / "platform" / "Dockerfile").read_text()


def env_of(dockerfile: str) -> dict[str, str]:
    """The ENV assignments of a Dockerfile (continuation lines joined)."""
    text = dockerfile.replace("\\\n", " ")
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            pairs.update(re.findall(r"(\w+)=(\S+)", line))
    return pairs


def test_flow_run_image_follows_the_contract() -> None:
    env = env_of(FLOW_RUNNER)
    assert env["DATA_DIR"] == contract.DATA_DIR
    assert env["PREFECT_LOCAL_STORAGE_PATH"] == contract.RESULTS_DIR
    assert env["PYTHONPATH"] == str(PurePosixPath(contract.FLOWS_DIR).parent)  # `import flows` works
    assert f"WORKDIR {contract.SCRATCH_DIR}" in FLOW_RUNNER
    assert f"mkdir -p {contract.FLOWS_DIR} {contract.DATA_DIR} {contract.SCRATCH_DIR}" in FLOW_RUNNER
    assert f"USER {contract.FLOW_UID}" in FLOW_RUNNER
    assert contract.FLOW_RUN_COMMAND.split()[-1] == "/opt/platform/services/flow_runner/engine.py"
    assert "COPY services/ /opt/platform/services/" in FLOW_RUNNER
    for dockerfile in (FLOW_RUNNER, PLATFORM):
        assert f"useradd --uid {contract.FLOW_UID} " in dockerfile


def test_compose_mounts_follow_the_contract() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert f"./flows:{contract.FLOWS_DIR}:ro" in services["prefect-deploy"]["volumes"]
    assert f"data:{contract.DATA_DIR}" in services["prefect-init"]["volumes"]
    assert services["prefect-deploy"]["user"] == str(contract.FLOW_UID)
    assert f"./.env:{contract.SETTINGS_FILE}:ro" in services["prefect-worker"]["volumes"]
    # The fixed names flow-run containers use to join the network and mount the volume.
    project = "${COMPOSE_PROJECT_NAME}"
    assert compose["networks"]["platform"]["name"] == contract.network_name(project)
    assert compose["volumes"]["data"]["name"] == contract.data_volume_name(project)


def test_deployments_run_from_the_mounted_flows_folder() -> None:
    spec = yaml.safe_load((REPO / "flows" / "prefect.yaml").read_text())
    (step,) = spec["pull"]
    assert step["prefect.deployments.steps.set_working_directory"]["directory"] == contract.FLOWS_DIR
