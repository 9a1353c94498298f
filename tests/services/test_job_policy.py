"""services/worker/job_policy.py: what a flow-run container may be, and what the platform fixes."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from services.work_pools import job_template, template_values
from services.worker.job_policy import OOM_SCORE_ADJ, JobPolicy, JobRefused
from services.worker.settings import flow_settings

SETTINGS = {
    "PLATFORM_DIR": "/srv/platform",
    "COMPOSE_PROJECT_NAME": "stack",
    "FLOW_RUN_IMAGE": "stack/flow-runner:local",
    "FLOW_RUN_MEMORY_LIMIT": "1g",
}
POLICY = JobPolicy.from_settings(SETTINGS.__getitem__, "2g")
GOOD = {
    "image": "stack/flow-runner:local",
    "network": "stack",
    "network_mode": None,
    "command": "python3 /opt/platform/services/flow_runner/engine.py",
    "environment": {"PREFECT_API_URL": "http://prefect-server:4200/api"},
    "auto_remove": True,
    "labels": {},
    "extra_hosts": None,
    "name": "run",
    "volumes": ["/srv/platform/flows:/opt/prefect/flows:ro", "stack-data:/data"],
    "mem_limit": "1g",
    "memswap_limit": None,
    "privileged": False,
}


def test_the_pools_own_settings_pass_and_are_hardened() -> None:
    POLICY.check(GOOD)
    hardened = POLICY.harden(dict(GOOD), {"WAREHOUSE": "duckdb", "PREFECT_API_URL": "ignored"})
    assert hardened["user"] == "1000:1000"
    assert hardened["cap_drop"] == ["ALL"]
    assert hardened["security_opt"] == ["no-new-privileges:true"]
    assert hardened["memswap_limit"] == hardened["mem_limit"] == 1024**3
    assert hardened["pids_limit"] > 0 and hardened["working_dir"] == "/scratch"
    # The platform's settings are defaults under the job's environment.
    assert hardened["environment"]["WAREHOUSE"] == "duckdb"
    assert hardened["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    # First in the OOM killer's queue, before any service (tests/test_compose_file.py).
    assert hardened["oom_score_adj"] == OOM_SCORE_ADJ > 0


# cgroup v2, else v1.
MEMORY_LIMIT_OF_THE_CONTAINER = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
)


def test_the_engine_applies_what_harden_fixes(docker_engine: None) -> None:
    """The hardened settings, as the worker hands them to docker-py, on a real container: the
    kernel sees the flow user, the raised OOM score and the memory limit."""
    import docker

    hardened = POLICY.harden(dict(GOOD, mem_limit="64m"), {})
    fixed = {key: hardened[key] for key in hardened if key not in GOOD or key == "mem_limit"}
    fixed["working_dir"] = "/"  # the flow-run image has /scratch; this stand-in image has not
    client = docker.from_env()
    try:
        output = client.containers.run(
            "debian:bookworm-slim",
            ["sh", "-c", f"id -u; cat /proc/self/oom_score_adj; {MEMORY_LIMIT_OF_THE_CONTAINER}"],
            remove=True,
            labels={"prefect-platform.test": "job-policy"},
            **fixed,
        )
    finally:
        client.close()
    assert output.decode().split() == ["1000", str(OOM_SCORE_ADJ), str(64 * 1024**2)]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"volumes": ["/:/host"]}, "volume '/:/host' is not allowed"),
        ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}, "docker.sock"),
        ({"privileged": True}, "privileged"),
        ({"image": "evil:latest"}, "image 'evil:latest' is not allowed"),
        ({"network_mode": "host"}, "network_mode 'host'"),
        ({"network": "bridge"}, "network 'bridge'"),
        ({"cap_add": ["SYS_ADMIN"]}, "container setting 'cap_add'"),
        ({"user": "0"}, "container setting 'user'"),
        ({"devices": ["/dev/sda"]}, "container setting 'devices'"),
        ({"mem_limit": "8g"}, "above the maximum 2048m"),
        ({"environment": {"LD_PRELOAD": "/x.so"}}, "LD_PRELOAD"),
    ],
)
def test_a_container_outside_the_policy_is_refused_naming_what(change: dict[str, Any], refusal: str) -> None:
    with pytest.raises(JobRefused, match=refusal.replace("(", r"\(")):
        POLICY.check({**GOOD, **change})


@pytest.mark.parametrize(
    ("variables", "refusal"),
    [
        ({"volumes": ["/:/host:ro"]}, "job variable 'volumes' is not allowed"),
        ({"container_create_kwargs": {"cap_add": ["ALL"]}}, "'container_create_kwargs'"),
        ({"env": {"RUN_AS_UID": "0", "PREFECT_API_URL": "http://evil"}}, "may not set 'PREFECT_API_URL'"),
        ({"env": {"LD_PRELOAD": "x"}}, "may not set 'LD_PRELOAD'"),
        ({"mem_limit": "64g"}, "above the maximum"),
    ],
)
def test_job_variables_outside_the_allowed_set_are_refused(variables: dict[str, Any], refusal: str) -> None:
    with pytest.raises(JobRefused, match=refusal):
        POLICY.check_job_variables(variables)
    POLICY.check_job_variables({"env": {"MY_SETTING": "x"}, "mem_limit": "512m", "labels": {"a": "b"}})


def test_the_pools_schema_refuses_the_same_variables_at_creation() -> None:
    """The first lock: the API validates job variables against the template's schema."""
    schema = job_template("docker", template_values(SETTINGS.__getitem__))["variables"]
    jsonschema.validate({"env": {"MY_SETTING": "x"}, "mem_limit": "512m"}, schema)
    for bad in (
        {"volumes": ["/:/host"]},
        {"privileged": True},
        {"env": {"PREFECT_API_KEY": "k"}},
        {"image": "x"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_flow_settings_leave_out_the_stacks_secrets_and_reserved_names(tmp_path: Any) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "POSTGRES_PASSWORD=pg\nPLATFORM_DIR=/srv\nSNOWFLAKE_PASSWORD=sf\nPREFECT_API_URL=http://x\nEMPTY=\n"
        "WAREHOUSE='duckdb'\n"
    )
    settings = flow_settings(env)
    assert settings["SNOWFLAKE_PASSWORD"] == "sf" and settings["WAREHOUSE"] == "duckdb"
    assert not {"POSTGRES_PASSWORD", "PLATFORM_DIR", "PREFECT_API_URL", "EMPTY"} & set(settings)
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in settings
    # Without a file: only what the platform always sets (heartbeats, the UI's address for links,
    # API retries that outlast a server restart).
    assert set(flow_settings(tmp_path / "absent")) == {
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY",
        "PREFECT_UI_URL",
        "PREFECT_CLIENT_MAX_RETRIES",
    }
