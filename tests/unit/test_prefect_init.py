"""scripts/prefect-init.py: the work pool's base job template that the init writes."""

from __future__ import annotations

import pytest

from tests.unit.load import load_script

prefect_init = load_script("scripts/prefect-init.py", "prefect_init")
SETTINGS = {
    "PLATFORM_DIR": "/srv/platform/",
    "FLOW_RUN_IMAGE": "prefect-platform/flow-runner:9",
    "PLATFORM_NETWORK": "stack-net",
    "PLATFORM_DATA_VOLUME": "stack-data",
    "FLOW_RUN_MEMORY_LIMIT": "768m",
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SETTINGS.items():
        monkeypatch.setenv(key, value)


def test_template_runs_the_local_image_on_the_stack_network_with_host_mounts(settings: None) -> None:
    template = prefect_init.desired_job_template()
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    assert defaults["image"] == "prefect-platform/flow-runner:9"
    assert defaults["image_pull_policy"] == "Never"
    assert defaults["networks"] == ["stack-net"]
    assert defaults["volumes"] == [
        "/srv/platform/flows:/opt/prefect/flows:ro",
        "/srv/platform/.env:/run/secrets/platform.env:ro",
        "stack-data:/data",
    ]
    assert defaults["auto_remove"] is True and defaults["mem_limit"] == "768m"
    assert defaults["command"] == "python -m prefect.engine"
    # The job configuration still renders every variable it templates.
    assert "{{ networks }}" in str(template["job_configuration"]["networks"])


@pytest.mark.parametrize(
    ("key", "value", "message"), [("PLATFORM_DIR", "flows", "absolute"), ("FLOW_RUN_IMAGE", "", "not set")]
)
def test_bad_settings_stop_the_init_with_a_clear_message(
    settings: None, monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit, match=message):
        prefect_init.desired_job_template()
