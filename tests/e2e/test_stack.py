"""End to end: a fresh copy of the checkout, `./scripts/up`, and the platform used like a user would.

One stack per module (starting it is the expensive part); tests run in file order and build on
each other's state (e.g. run history that must survive restarts).
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.stack import PrefectApi, Stack, copy_checkout, env_value, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("clone")
    copy_checkout(root)
    with running(Stack(root), request) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[PrefectApi]:
    with stack.client() as client:
        yield PrefectApi(client)


def wait_ready(stack: Stack, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{stack.api_url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"server not ready after {timeout}s")


def test_up_creates_private_env_and_prints_ui_without_secrets(stack: Stack) -> None:
    env_file = stack.root / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = [line for line in env_file.read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in values if "__GENERATE__" in line]
    password = env_value(env_file, "POSTGRES_PASSWORD")
    auth = env_value(env_file, "PREFECT_API_AUTH_STRING")
    assert len(password) >= 32 and len(auth.split(":", 1)[1]) >= 32
    assert env_value(env_file, "PLATFORM_DIR") == str(stack.root)
    output = stack.up_result.stdout + stack.up_result.stderr  # type: ignore[attr-defined]
    assert f"http://localhost:{stack.port}" in output
    assert password not in output and auth.split(":", 1)[1] not in output


def test_second_up_keeps_secrets(stack: Stack) -> None:
    before = (stack.root / ".env").read_text()
    stack.run("./scripts/up", "--no-build")
    assert (stack.root / ".env").read_text() == before


def started(stack: Stack) -> dict[str, str]:
    ids = stack.compose("ps", "-a", "-q").stdout.split()
    out = subprocess.check_output(["docker", "inspect", "--format", "{{.Name}} {{.State.StartedAt}}", *ids])
    return dict(line.split() for line in out.decode().splitlines())


def test_up_with_nothing_changed_leaves_the_stack_and_a_changed_flow_is_deployed(
    stack: Stack, api: PrefectApi
) -> None:
    before = started(stack)
    again = stack.run("./scripts/up", "--no-build")
    assert "nothing changed" in again.stdout and f"http://localhost:{stack.port}" in again.stdout
    assert started(stack) == before  # not even the one-shots ran again
    deployments = stack.root / "flows" / "prefect.yaml"
    original = deployments.read_text()
    old = "description: Platform self-check (task retry, persisted result, log line, artifact)."
    assert old in original
    deployments.write_text(original.replace(old, "description: Platform self-check, edited."))
    try:
        changed = stack.run("./scripts/up", "--no-build")
        assert "nothing changed" not in changed.stdout
        assert api.deployment("platform-check", "self-check")["description"] == "Platform self-check, edited."
    finally:
        deployments.write_text(original)
        stack.run("./scripts/up", "--no-build")


def test_ui_is_served(stack: Stack) -> None:
    page = httpx.get(f"http://127.0.0.1:{stack.port}/", timeout=10, follow_redirects=True)
    assert page.status_code == 200 and "<html" in page.text.lower()
    settings = httpx.get(f"http://127.0.0.1:{stack.port}/ui-settings", timeout=10).json()
    assert settings["api_url"] == "/api"  # relative: the browser reaches the API on the UI's origin


def test_api_requires_auth(stack: Stack, api: PrefectApi) -> None:
    assert httpx.get(f"{stack.api_url}/health", timeout=10).status_code == 200
    anonymous = httpx.post(f"{stack.api_url}/flows/filter", json={}, timeout=10)
    assert anonymous.status_code == 401
    wrong = httpx.post(
        f"{stack.api_url}/flows/filter", json={}, auth=("admin", "not-the-password"), timeout=10
    )
    assert wrong.status_code == 401
    assert isinstance(api.post("/flows/filter"), list)


def test_postgres_is_not_published_on_the_host(stack: Stack) -> None:
    published = stack.compose("port", "postgres", "5432", check=False)
    assert published.returncode != 0 or published.stdout.strip() in ("", ":0")
    container = stack.compose("ps", "-q", "postgres").stdout.strip()
    ports = json.loads(
        subprocess.check_output(["docker", "inspect", "-f", "{{json .NetworkSettings.Ports}}", container])
    )
    assert all(not bindings for bindings in (ports or {}).values())


def test_work_pool_is_docker_with_the_stack_template(stack: Stack, api: PrefectApi) -> None:
    pool = api.get("/work_pools/docker-pool")
    assert pool["type"] == "docker"
    job = pool["base_job_template"]["job_configuration"]
    assert job["networks"] == [stack.project]
    assert job["volumes"] == [f"{stack.root}/flows:/opt/prefect/flows:ro", f"{stack.project}-data:/data"]
    assert job["image"] == stack.image("prefect-deploy")
    assert job["image_pull_policy"] == "Never"
    assert job["auto_remove"] is True
    variables = pool["base_job_template"]["variables"]
    assert set(variables["properties"]) == {"name", "env", "labels", "mem_limit"}
    assert variables["properties"]["mem_limit"]["default"] == env_value(
        stack.root / ".env", "FLOW_RUN_MEMORY_LIMIT"
    )
    # Secrets stay out of the template (the UI shows it): the worker passes them at each run.
    assert env_value(stack.root / ".env", "POSTGRES_PASSWORD") not in json.dumps(pool)
    assert env_value(stack.root / ".env", "PREFECT_API_AUTH_STRING") not in json.dumps(pool)


def run_self_check(api: PrefectApi) -> tuple[dict, list[str]]:
    run = api.wait(api.trigger("platform-check", "self-check"))
    return run, api.logs_with(run["id"], "platform-check marker=")


def test_self_check_runs_in_its_own_container_on_the_stack_network(stack: Stack, api: PrefectApi) -> None:
    run, logs = run_self_check(api)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert any("marker=v1" in line for line in logs), logs
    assert any("uid=1000" in line for line in logs), "the flow must run as the unprivileged user"
    assert any("Retry 1/2" in line for line in logs), "the planned task failure was not retried"
    host = re.search(r"host=(\w+)", "\n".join(logs)).group(1)  # type: ignore[union-attr]
    artifacts = api.artifacts(run["id"])
    assert any(host in (a.get("data") or "") for a in artifacts), artifacts
    # The container is none of the compose services, joined the stack network, and is removed after.
    services = stack.compose("ps", "-aq").stdout.split()
    assert not any(cid.startswith(host) for cid in services)
    events = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            str(int(stack.started_at)),
            "--until",
            str(int(time.time()) + 1),  # type: ignore[attr-defined]
            "--filter",
            "type=network",
            "--filter",
            "event=connect",
            "--filter",
            f"network={stack.project}",
            "--format",
            "{{.Actor.Attributes.container}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert any(cid.startswith(host) for cid in events), f"{host} never joined network {stack.project}"
    for _ in range(20):
        if not subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"id={host}"], capture_output=True, text=True
        ).stdout.strip():
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"flow-run container {host} was not removed (auto_remove)")


def test_results_persist_on_the_shared_volume(stack: Stack) -> None:
    image = stack.image("prefect-deploy")
    listing = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{stack.project}-data:/data", image, "ls", "/data/results"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listing, "no persisted result on the data volume"


def test_code_change_is_picked_up_without_rebuild(stack: Stack, api: PrefectApi) -> None:
    images = [stack.image(service) for service in ("prefect-deploy", "prefect-server")]
    image_ids = ["docker", "image", "inspect", "-f", "{{.Id}}", *images]
    images_before = subprocess.check_output(image_ids, text=True)
    source = stack.root / "flows" / "platform_check.py"
    source.write_text(source.read_text().replace('CODE_MARKER = "v1"', 'CODE_MARKER = "v2"'))
    run, logs = run_self_check(api)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert any("marker=v2" in line for line in logs), logs
    assert subprocess.check_output(image_ids, text=True) == images_before, "an image was rebuilt"


def mart_rows(api: PrefectApi, run_id: str) -> dict[str, int]:
    summary = next(a for a in api.artifacts(run_id) if a["key"].startswith("elt-summary"))
    return {
        name: int(rows) for name, rows in re.findall(r"^\| (\w+) \| (\d+) \|$", summary["data"], re.MULTILINE)
    }


def test_elt_daily_runs_in_a_flow_container_and_is_idempotent(api: PrefectApi) -> None:
    first = api.wait(api.trigger("elt", "daily"), timeout=900)
    assert first["state_type"] == "COMPLETED", first["state"]
    rows = mart_rows(api, first["id"])
    assert set(rows) >= {"customer_lifetime_value", "daily_revenue"} and all(rows.values()), rows
    second = api.wait(api.trigger("elt", "daily"), timeout=900)
    assert second["state_type"] == "COMPLETED", second["state"]
    assert mart_rows(api, second["id"]) == rows, "re-running the same data must not change the marts"


def test_restart_of_server_and_postgres_loses_nothing(stack: Stack, api: PrefectApi) -> None:
    runs_before = {run["id"]: run["state_type"] for run in api.post("/flow_runs/filter", {"limit": 200})}
    deployments_before = {d["id"] for d in api.post("/deployments/filter")}
    assert runs_before and deployments_before
    stack.compose("restart", "postgres", "prefect-server")
    wait_ready(stack)
    runs_after = {run["id"]: run["state_type"] for run in api.post("/flow_runs/filter", {"limit": 200})}
    assert {d["id"] for d in api.post("/deployments/filter")} == deployments_before
    assert all(runs_after.get(run_id) == state for run_id, state in runs_before.items())
    # And the stack still runs flows afterwards (the worker reconnects by itself).
    run, _ = run_self_check(api)
    assert run["state_type"] == "COMPLETED", run["state"]


def test_flow_runs_survive_a_worker_restart(stack: Stack, api: PrefectApi) -> None:
    stack.compose("stop", "-t", "10", "prefect-worker")
    waiting = api.trigger("platform-check", "self-check")  # scheduled while no worker runs
    stack.compose("start", "prefect-worker")
    racing = api.trigger("platform-check", "self-check")
    stack.compose("restart", "-t", "10", "prefect-worker")  # restarted while it picks up or runs it
    for run_id in (waiting, racing):
        run = api.wait(run_id)
        assert run["state_type"] == "COMPLETED", run["state"]


def test_a_running_flow_can_be_cancelled(stack: Stack, api: PrefectApi) -> None:
    run_id = api.trigger("platform-check", "self-check", {"fail_times": 0, "hold_seconds": 600})
    api.logs_with(run_id, "holding for", timeout=120)
    host = re.search(r"host=(\w+)", "\n".join(api.logs(run_id))).group(1)  # type: ignore[union-attr]
    api.post(f"/flow_runs/{run_id}/set_state", {"state": {"type": "CANCELLING"}, "force": True})
    run = api.wait(run_id, timeout=90)
    assert run["state_type"] == "CANCELLED", run["state"]
    time.sleep(3)  # anything the dying engine might still report would arrive by now
    history = [state["type"] for state in api.get(f"/flow_run_states/?flow_run_id={run_id}")]
    assert history[-1] == "CANCELLED" and "CRASHED" not in history, history  # no false failure alert
    running = subprocess.run(["docker", "ps", "-q", "--filter", f"id={host}"], capture_output=True, text=True)
    assert not running.stdout.strip(), f"flow-run container {host} still runs after cancellation"


def test_scheduled_deployments_get_runs(api: PrefectApi) -> None:
    """The scheduler service works against this stack's database (SQLAlchemy 2.1 broke it)."""
    scheduled = [
        d for d in api.post("/deployments/filter") if any(s["active"] for s in d.get("schedules", []))
    ]
    assert scheduled, "elt/daily must be scheduled"

    def runs_waiting(deployment: dict) -> int:
        body = {
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        }
        return api.post("/flow_runs/count", body)

    deadline = time.monotonic() + 150
    while not all(runs_waiting(d) for d in scheduled) and time.monotonic() < deadline:
        time.sleep(3)
    assert not [d["name"] for d in scheduled if not runs_waiting(d)], "no scheduled run for these deployments"


def snapshot(api: PrefectApi) -> dict:
    keep = (
        "id",
        "name",
        "entrypoint",
        "parameters",
        "work_pool_name",
        "job_variables",
        "tags",
        "concurrency_limit",
    )
    deployments = sorted(
        (
            {k: d.get(k) for k in keep} | {"schedules": [s["schedule"] for s in d.get("schedules", [])]}
            for d in api.post("/deployments/filter")
        ),
        key=lambda d: d["name"],
    )

    def automation(a: dict) -> dict:
        kept = {k: a[k] for k in ("id", "name", "trigger", "actions", "enabled")}
        if "__automation_" in a["name"]:
            # A deployment's trigger from flows/prefect.yaml: `prefect deploy` deletes and creates
            # it again on every deploy (Prefect's behaviour), the same but with new ids.
            kept |= {"id": None, "trigger": {**a["trigger"], "id": None}}
        return kept

    automations = sorted((automation(a) for a in api.post("/automations/filter")), key=lambda a: a["name"])
    pool = api.get("/work_pools/docker-pool")
    return {"pool": pool["base_job_template"], "deployments": deployments, "automations": automations}


def test_init_is_idempotent(stack: Stack, api: PrefectApi) -> None:
    before = snapshot(api)
    assert any("heartbeat" in a["name"] for a in before["automations"])
    rerun = stack.compose("run", "--rm", "--no-deps", "prefect-init")
    assert "work pool 'docker-pool' unchanged" in rerun.stdout
    assert "created" not in rerun.stdout and "updated" not in rerun.stdout, rerun.stdout
    redeploy = stack.compose("run", "--rm", "--no-deps", "prefect-deploy")
    assert "deployments registered from flows/prefect.yaml" in redeploy.stdout
    assert snapshot(api) == before


def test_up_never_generates_a_password_the_existing_database_does_not_know(stack: Stack) -> None:
    env_file = stack.root / ".env"
    saved = env_file.read_text()
    env_file.unlink()  # e.g. a fresh clone pointed at the same project, or a lost .env
    try:
        result = stack.run("./scripts/up", check=False)
        assert result.returncode != 0
        assert "POSTGRES_PASSWORD is missing from .env" in result.stderr, result.stderr
        assert f"{stack.project}_postgres-data exists" in result.stderr, result.stderr
        assert not env_file.exists(), "nothing may be generated"
    finally:
        env_file.write_text(saved)
        env_file.chmod(0o600)


def test_host_cli_talks_to_the_stack(stack: Stack) -> None:
    listed = stack.run("./scripts/prefect", "deployment", "ls").stdout
    assert "elt/daily" in listed and "platform-check/self-check" in listed, listed
    assert env_value(stack.root / ".env", "PREFECT_API_AUTH_STRING").split(":")[1] not in listed


def test_deploy_refuses_a_flow_that_cannot_be_imported_and_keeps_the_deployments(
    stack: Stack, api: PrefectApi
) -> None:
    spec = stack.root / "flows" / "prefect.yaml"
    original = spec.read_text()
    (stack.root / "flows" / "half_written.py").write_text(
        "from prefect import flow\nimport pandas_but_misspelled\n\n\n@flow\ndef half() -> None: ...\n"
    )
    spec.write_text(
        original.replace(
            "deployments:\n",
            "deployments:\n  - name: half\n    entrypoint: half_written.py:half\n"
            "    work_pool: *stack_pool\n",
            1,
        )
    )
    try:
        before = api.count("deployments")
        result = stack.run("./scripts/deploy", check=False)
        assert result.returncode != 0
        assert "flows/half_written.py, line 2: ModuleNotFoundError" in result.stderr, result.stderr
        assert api.count("deployments") == before, "nothing may be registered"
    finally:
        spec.write_text(original)
        (stack.root / "flows" / "half_written.py").unlink()
    assert "deployments registered" in stack.run("./scripts/deploy").stdout


def test_unknown_parameters_are_refused_when_the_run_is_created(api: PrefectApi) -> None:
    deployment = api.deployment("elt", "daily")
    response = api.http.post(
        f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": {"full_refrsh": True}}
    )
    assert response.status_code == 409 and "full_refrsh" in response.text, response.text


SINK = """
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        print("ALERT", self.path, body.decode(), flush=True)
        self.send_response(200); self.end_headers()
http.server.HTTPServer(("0.0.0.0", 8080), Sink).serve_forever()
"""


def test_failed_run_sends_an_alert_to_the_webhook(stack: Stack, api: PrefectApi) -> None:
    # A webhook receiver on the stack's network, standing in for Slack or a pager.
    sink = f"{stack.project}-alert-sink"
    image = stack.image("prefect-deploy")
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            sink,
            "--network",
            stack.project,
            "--entrypoint",
            "python3",
            image,
            "-c",
            SINK,
        ],
        check=True,
        capture_output=True,
    )
    try:
        env_file = stack.root / ".env"
        env_file.write_text(
            env_file.read_text().replace(
                "ALERT_WEBHOOK_URL=\n", f"ALERT_WEBHOOK_URL=http://{sink}:8080/hook\n"
            )
        )
        assert (
            "alert on failed or crashed flow runs' created"
            in stack.compose("run", "--rm", "--no-deps", "prefect-init").stdout
        )
        run = api.wait(api.trigger("platform-check", "self-check", {"fail_times": 2}))
        assert run["state_type"] == "COMPLETED"  # two failures are within the task's two retries
        failing = api.wait(api.trigger("platform-check", "self-check", {"hold_seconds": -1}))  # bad parameter
        assert failing["state_type"] == "FAILED", failing["state"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            received = subprocess.run(["docker", "logs", sink], capture_output=True, text=True).stdout
            if failing["name"] in received:
                break
            time.sleep(2)
        assert failing["name"] in received and "Failed" in received, received
        assert run["name"] not in received, "a completed run must not alert"
    finally:
        subprocess.run(["docker", "rm", "-f", sink], capture_output=True)
