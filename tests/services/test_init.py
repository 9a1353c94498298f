"""services/init: the work pool's base job template (services/work_pools/docker.json, rendered)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect_docker.worker import DockerWorker

from services import contract
from services.init import work_pool
from services.init.data_volume import prepare_data_volume

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


def test_template_runs_the_local_image_on_the_stack_network_with_host_mounts(settings: None) -> None:
    template = work_pool.desired_job_template()
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    assert defaults["image"] == "prefect-platform/flow-runner:9"
    assert defaults["image_pull_policy"] == "Never"
    assert defaults["networks"] == ["stack"]
    assert defaults["volumes"] == [
        "/srv/platform/flows:/opt/prefect/flows:ro",
        "/srv/platform/.env:/run/secrets/platform.env:ro",
        "stack-data:/data",
    ]
    assert defaults["auto_remove"] is True and defaults["mem_limit"] == "768m"
    assert defaults["command"] == "python -m prefect.engine"
    assert defaults["labels"] == {contract.FLOW_RUN_LABEL: "flow-run"}
    assert defaults["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(work_pool.HEARTBEAT_SECONDS)
    # The job configuration still renders every variable it templates.
    assert "{{ networks }}" in str(template["job_configuration"]["networks"])
    assert "${" not in json.dumps(template), "every placeholder is filled"


def test_template_file_matches_the_installed_docker_worker() -> None:
    """An upgrade of prefect-docker that changes its job configuration must be looked at."""
    ours = json.loads((work_pool.TEMPLATES_DIR / "docker.json").read_text())
    upstream = DockerWorker.get_default_base_job_template()
    assert ours["job_configuration"] == upstream["job_configuration"]
    assert set(ours["variables"]["properties"]) == set(upstream["variables"]["properties"])


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
    with pytest.raises(SystemExit, match=r"\$\{NOPE\}"):
        work_pool.render({"a": ["x-${NOPE}"]}, {"FLOWS_DIR": "/f"})


def test_data_volume_owned_by_someone_else_stops_the_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.init.data_volume.FLOW_UID", 4242)
    with pytest.raises(SystemExit, match="not owned by uid 4242"):
        prepare_data_volume(tmp_path, tmp_path / "results")
