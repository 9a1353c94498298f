"""services/init: the work pool's base job template (services/work_pools/docker.json, rendered)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect_docker.worker import DockerWorker

from services import contract
from services.init import work_pool
from services.init.data_volume import prepare_data_volume
from services.work_pools import TEMPLATES_DIR, render

SETTINGS = {
    "PLATFORM_DIR": "/srv/platform/",
    "COMPOSE_PROJECT_NAME": "stack",
    "FLOW_RUN_IMAGE": "prefect-platform/flow-runner:9",
    "FLOW_RUN_MEMORY_LIMIT": "768m",
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SETTINGS.items():
        monkeypatch.setenv(key, value)


def test_template_fixes_image_mounts_network_and_command_and_exposes_only_safe_variables(
    settings: None,
) -> None:
    template = work_pool.desired_job_template()
    job = template["job_configuration"]
    assert job["image"] == "prefect-platform/flow-runner:9"
    assert job["image_pull_policy"] == "Never"
    assert job["networks"] == ["stack"]
    assert job["volumes"] == ["/srv/platform/flows:/opt/prefect/flows:ro", "stack-data:/data"]
    assert job["auto_remove"] is True and job["privileged"] is False
    assert job["command"] == contract.FLOW_RUN_COMMAND
    variables = template["variables"]
    assert set(variables["properties"]) == {"name", "env", "labels", "mem_limit"}
    assert variables["additionalProperties"] is False
    assert variables["properties"]["mem_limit"]["default"] == "768m"
    assert variables["properties"]["labels"]["default"] == {contract.FLOW_RUN_LABEL: "flow-run"}
    assert "${" not in json.dumps(template), "every placeholder is filled"


def test_template_configures_only_fields_the_installed_docker_worker_knows() -> None:
    """An upgrade of prefect-docker that renames its job configuration must be looked at."""
    ours = json.loads((TEMPLATES_DIR / "docker.json").read_text())
    upstream = DockerWorker.get_default_base_job_template()
    assert set(ours["job_configuration"]) <= set(upstream["job_configuration"])


@pytest.mark.parametrize(
    ("key", "value", "message"), [("PLATFORM_DIR", "flows", "absolute"), ("FLOW_RUN_IMAGE", "", "not set")]
)
def test_bad_settings_stop_the_init_with_a_clear_message(
    settings: None, monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit, match=message):
        work_pool.desired_job_template()


def test_an_unknown_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\$\{NOPE\}"):
        render({"a": ["x-${NOPE}"]}, {"FLOWS_DIR": "/f"})


def test_data_volume_owned_by_someone_else_stops_the_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.init.data_volume.FLOW_UID", 4242)
    with pytest.raises(SystemExit, match="not owned by uid 4242"):
        prepare_data_volume(tmp_path, tmp_path / "results")
