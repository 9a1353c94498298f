"""End to end: upgrade, rollback, retention and status on one stack (issue 13), as an operator runs them.

The stack runs commit "release A" of a git copy of the checkout and builds a history (an ELT run,
a self-check); then: an upgrade to commit B that keeps the history; an upgrade to commit C whose
migration fails half-way, rolled back to B with its data; retention of old runs and old files;
status of a broken stack. Tests run in file order and build on each other's state. Backup and
restore: test_operations_restore.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.operations import (
    build_history,
    command,
    git,
    history,
    last_line,
    psql,
    release_stack,
    warehouse_rows,
)
from tests.support.stack import PrefectApi, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    with release_stack(
        tmp_path_factory.mktemp("ops-upgrade"), request, "upgrade and retention (issue 13)", FIGURES
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[PrefectApi]:
    with stack.client() as client:
        yield PrefectApi(client)


# --- the running release -------------------------------------------------------------------------
def test_elt_and_self_check_build_history(stack: Stack, api: PrefectApi) -> None:
    build_history(stack, api)


# --- upgrade and rollback ---------------------------------------------------------------------------
def test_upgrade_to_the_next_commit_keeps_history(stack: Stack, api: PrefectApi) -> None:
    source = stack.root / "flows" / "platform_check.py"
    source.write_text(source.read_text().replace('CODE_MARKER = "v1"', 'CODE_MARKER = "v2"'))
    git(stack, "commit", "-q", "-am", "release B")
    release_b = git(stack, "rev-parse", "HEAD")
    git(stack, "checkout", "-q", "HEAD~1")  # the stack runs release A
    dry = command(stack, "./scripts/upgrade", "--dry-run", release_b)
    assert dry.returncode == 0 and last_line(dry) == release_b, dry.stderr
    assert "1 commit(s)" in dry.stderr and "release B" in dry.stderr
    assert "database migrations: none (Prefect stays 3.8.8" in dry.stderr
    assert git(stack, "rev-parse", "HEAD") != release_b  # a dry run changes nothing
    before = history(api)
    result = command(stack, "./scripts/upgrade", release_b)
    assert result.returncode == 0, result.stderr
    assert last_line(result) == release_b and git(stack, "rev-parse", "HEAD") == release_b
    FIGURES["upgrade seconds"] = result.seconds  # type: ignore[attr-defined]
    after = history(api)
    assert after["deployments"] == before["deployments"]
    assert before["finished_runs"].items() <= after["finished_runs"].items()
    checks = [
        r
        for r in api.post("/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["platform-ops"]}}})
        if r["state_type"] == "COMPLETED"
    ]
    assert checks and any("marker=v2" in line for line in api.logs(checks[0]["id"])), "no self-check of B"
    for service in ("prefect-server", "prefect-deploy"):
        image = stack.image(service)
        previous = image.rsplit(":", 1)[0] + ":previous"
        assert subprocess.run(["docker", "image", "inspect", previous], capture_output=True).returncode == 0
    stack.release_b = release_b  # type: ignore[attr-defined]


CANARY_MIGRATION = """
revision = "aaaa00000001"
down_revision = "{head}"
branch_labels = depends_on = None

from alembic import op


def upgrade():
    op.execute("CREATE TABLE upgrade_canary (id int)")


def downgrade():
    op.execute("DROP TABLE upgrade_canary")
"""
BROKEN_MIGRATION = """
revision = "aaaa00000002"
down_revision = "aaaa00000001"
branch_labels = depends_on = None


def upgrade():
    raise RuntimeError("a migration that fails half-way (the upgrade rollback test)")


def downgrade():
    pass
"""
# Applied in order: the canary (committed in its own transaction), then the failing one.
BROKEN_MIGRATIONS = {
    "2099_01_01_000000_aaaa00000001_upgrade_canary.py": CANARY_MIGRATION,
    "2099_01_01_000001_aaaa00000002_broken.py": BROKEN_MIGRATION,
}


def test_a_failed_upgrade_rolls_back_images_code_and_database(stack: Stack, api: PrefectApi) -> None:
    head = psql(stack, "select version_num from alembic_version")
    folder = stack.root / "docker" / "platform" / "upgrade-test"
    folder.mkdir()
    for name, text in BROKEN_MIGRATIONS.items():
        (folder / name).write_text(text.replace("{head}", head))
    dockerfile = stack.root / "docker" / "platform" / "Dockerfile"
    versions = (
        "/opt/venv/lib/python3.11/site-packages/prefect/server/database/_migrations/versions/postgresql/"
    )
    dockerfile.write_text(
        dockerfile.read_text() + f"USER 0\nCOPY docker/platform/upgrade-test/ {versions}\nUSER 1000\n"
    )
    git(stack, "add", "-A")
    git(stack, "commit", "-q", "-m", "release C: a migration that fails half-way")
    release_c = git(stack, "rev-parse", "HEAD")
    git(stack, "checkout", "-q", stack.release_b)  # type: ignore[attr-defined]
    image = stack.image("prefect-server")
    image_id = subprocess.check_output(["docker", "image", "inspect", "-f", "{{.Id}}", image], text=True)
    before, rows = history(api), warehouse_rows(stack)
    result = command(stack, "./scripts/upgrade", release_c)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED at migrating the database" in result.stderr, result.stderr
    assert "rolled back: the previous release runs with its data" in result.stderr
    FIGURES["failed upgrade + rollback seconds"] = result.seconds  # type: ignore[attr-defined]
    assert git(stack, "rev-parse", "HEAD") == stack.release_b  # type: ignore[attr-defined]
    assert (
        subprocess.check_output(["docker", "image", "inspect", "-f", "{{.Id}}", image], text=True) == image_id
    )
    assert psql(stack, "select version_num from alembic_version") == head
    assert (
        psql(stack, "select to_regclass('public.upgrade_canary') is null") == "t"
    )  # the half-done part undone
    after = history(api)
    assert after["deployments"] == before["deployments"]
    assert after["finished_runs"] == before["finished_runs"] and after["artifacts"] == before["artifacts"]
    assert warehouse_rows(stack) == rows
    check = api.wait(api.trigger("platform-check", "self-check"))
    assert check["state_type"] == "COMPLETED", check["state"]
    assert any("marker=v2" in line for line in api.logs_with(check["id"], "marker="))


# --- retention ------------------------------------------------------------------------------------
def test_old_flow_runs_are_deleted_and_recent_ones_stay(stack: Stack, api: PrefectApi) -> None:
    checks = api.post(
        "/flow_runs/filter",
        {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "sort": "START_TIME_ASC", "limit": 200},
    )
    old, recent = checks[0], checks[-1]  # the first run of the module, and the newest
    assert api.artifacts(old["id"]) and api.logs(old["id"])
    moved = "now() - interval '100 days'"
    psql(stack, f"UPDATE flow_run SET start_time = {moved}, end_time = {moved} WHERE id = '{old['id']}'")
    stack.compose("restart", "prefect-server")  # the vacuum service runs when the server starts, then hourly
    run_id = old["id"]
    left = (  # the run, its logs and its artifacts
        f"select (select count(*) from flow_run where id = '{run_id}')"
        f" + (select count(*) from log where flow_run_id = '{run_id}')"
        f" + (select count(*) from artifact where flow_run_id = '{run_id}')"
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        gone = psql(stack, left) == "0"
        if gone:
            break
        time.sleep(3)
    assert gone, "the vacuum service did not delete a flow run that ended 100 days ago"
    assert psql(stack, f"select count(*) from flow_run where id = '{recent['id']}'") == "1"
    assert psql(stack, f"select count(*) from artifact where flow_run_id = '{recent['id']}'") != "0"
    assert psql(stack, f"select count(*) from task_run where flow_run_id = '{old['id']}'") == "0"


def test_old_results_and_dbt_output_are_pruned_from_the_data_volume(stack: Stack, api: PrefectApi) -> None:
    setup = (
        "set -e; mkdir -p /data/dbt/shop/duckdb-x/target /data/dlt-work/dlt-killed; "
        "echo old > /data/results/old-result; echo new > /data/results/new-result; "
        "echo old > /data/dbt/shop/duckdb-x/target/old.json; "
        "touch -d '100 days ago' /data/results/old-result /data/dbt/shop/duckdb-x/target/old.json "
        "/data/dlt-work/dlt-killed"
    )
    stack.compose("run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", "prefect-ops", "-c", setup)
    run = api.wait(api.trigger("platform-maintenance", "prune-data"))
    assert run["state_type"] == "COMPLETED", run["state"]
    listing = stack.compose(
        "run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", "prefect-ops", "-c",
        "cd /data && find results dbt dlt-work warehouse.duckdb -maxdepth 4 | sort",
    ).stdout.split()  # fmt: skip
    assert "results/new-result" in listing and "warehouse.duckdb" in listing
    assert "results/old-result" not in listing and "dbt/shop/duckdb-x/target/old.json" not in listing
    assert "dlt-work/dlt-killed" not in listing


# --- status of a broken stack -------------------------------------------------------------------------
def test_status_of_a_broken_stack_fails_with_the_reason(stack: Stack) -> None:
    stack.compose("stop", "prefect-worker")
    try:
        result = command(stack, "./scripts/status")
        assert result.returncode == 1
        assert last_line(result).startswith("status: UNHEALTHY: services: prefect-worker exited"), (
            result.stdout
        )
        machine = json.loads(command(stack, "./scripts/status", "--json").stdout)
        assert machine["healthy"] is False and any("prefect-worker" in p for p in machine["problems"])
    finally:
        stack.compose("up", "-d", "--wait", "prefect-worker")
    backups = stack.root / "backups"
    shutil.rmtree(backups)  # the last good backup is gone: the stack is older than ... no, younger
    result = command(stack, "./scripts/status")
    assert result.returncode == 0, result.stdout  # a stack younger than BACKUP_MAX_AGE_HOURS needs none yet
    stale = command(stack, "env", "BACKUP_MAX_AGE_HOURS=0", "./scripts/status")
    assert "not checked (BACKUP_MAX_AGE_HOURS=0)" in stale.stdout
