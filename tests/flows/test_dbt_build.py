"""The dbt flow (deployment dbt/build) on a dbt project nobody on the team wrote
(tests/flows/dbt_projects/jaffle_lite): real dbt, DuckDB and a real Prefect server.

The project brings its own profiles.yml (another profile name, a relative DuckDB path), seeds, a
snapshot, a local package outside its folder and a test that fails on demand. What must hold: it
builds into the platform's warehouse without a change to it, nothing is written into its folder,
every node is a task run with its logs and (models, seeds, snapshots) its asset event, a failing
node fails the run naming it, packages are installed once, and bad parameters fail before anything
runs, naming the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId
from prefect.client.schemas.objects import TaskRunResult

from flows.dbt_build import dbt_build
from tests.flows.elt_testkit import DuckWarehouse, artifacts, asset_events, task_runs, wait_for

FIXTURES = Path(__file__).parent / "dbt_projects"
PROJECT = "jaffle_lite"
NODES = {"success": 9, "pass": 11}  # 3 seeds, 3 views, 2 tables, 1 snapshot; 11 data tests


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture projects as DBT_PROJECTS_DIR (a copy: one test edits a packages.yml)."""
    root = tmp_path / "projects"
    shutil.copytree(FIXTURES, root)
    monkeypatch.setenv("DBT_PROJECTS_DIR", str(root))
    monkeypatch.delenv("DBT_THREADS", raising=False)
    return root


def _node_runs(flow_run_id: Any, expected: int) -> dict[str, Any]:
    """The flow run's node task runs by name, once the server has recorded all of them."""
    found: dict[str, Any] = {}

    def complete() -> bool:
        found.clear()
        found.update({tr.name: tr for tr in task_runs(flow_run_id) if not tr.name.startswith("dbt ")})
        return len(found) >= expected and all(tr.state and tr.state.is_final() for tr in found.values())

    wait_for(complete, timeout=60)
    return found


def _logs(task_run_id: Any) -> list[str]:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])))
    return [log.message for log in logs]


def test_foreign_project_builds_on_the_platform_warehouse_with_every_node_a_task(
    warehouse: DuckWarehouse, projects: Path
) -> None:
    before = _files(projects)

    state = dbt_build(project=PROJECT, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["node_statuses"] == NODES
    assert result["schema"] == PROJECT

    # Built into the platform's DuckDB (not the project's relative jaffle.duckdb), in a schema named
    # after the project; the local package's macro (cents to dollars) ran: customer 1 paid 10.00
    # and 25.00 and was refunded 10.00.
    assert warehouse.query(
        "select customer_lifetime_value, number_of_orders from jaffle_lite.customers where customer_id = 1"
    ) == [(25, 2)]
    assert warehouse.count("jaffle_lite_raw.raw_orders") == 7
    assert warehouse.count("jaffle_lite.orders_snapshot") == 7
    # Nothing was written into the project's folder (read-only in the stack), no jaffle.duckdb anywhere.
    assert _files(projects) == before
    assert not list(projects.parent.rglob("jaffle.duckdb"))

    # dbt's files live in the project's workspace under DATA_DIR/dbt/<name>/.
    workspace = warehouse.data_dir / "dbt" / PROJECT
    assert (workspace / "duckdb-jaffle_lite" / "target" / "manifest.json").is_file()
    assert (workspace / "duckdb-jaffle_lite" / "logs" / "dbt.log").is_file()
    assert (workspace / "project" / "dbt_packages" / "jaffle_utils" / "macros").is_dir()
    # The profile the project asks for (jaffle_local) points at the platform's warehouse.
    profile = yaml.safe_load((workspace / "profiles" / "profiles.yml").read_text())
    assert list(profile) == ["jaffle_local"]
    assert profile["jaffle_local"]["outputs"]["duckdb"]["path"] == "{{ env_var('DUCKDB_PATH') }}"

    # Every seed, model, snapshot and test is a Completed task run, with dbt's edges between them.
    runs = _node_runs(state.state_details.flow_run_id, sum(NODES.values()))
    assert len(runs) == sum(NODES.values())
    assert {"seed raw_orders", "model stg_payments", "model customers", "snapshot orders_snapshot"} <= set(
        runs
    )
    assert "test unique_customers_customer_id" in runs
    assert all(tr.state.is_completed() for tr in runs.values())
    upstream = {
        i.id for i in runs["model customers"].task_inputs.get("wait_for", []) if isinstance(i, TaskRunResult)
    }
    assert {runs["model orders"].id, runs["model stg_customers"].id} <= upstream
    # Each node's dbt lines are its task run's logs.
    line = "OK created sql table model jaffle_lite.customers"
    wait_for(lambda: any(line in message for message in _logs(runs["model customers"].id)), 30)

    # Models, seeds and snapshots are assets, keyed like prefect-dbt's, with their upstream assets.
    key = "duckdb://warehouse/jaffle_lite/customers"
    wait_for(lambda: any(e["resource"]["prefect.resource.id"] == key for e in asset_events("duckdb://")), 30)
    event = next(e for e in asset_events("duckdb://") if e["resource"]["prefect.resource.id"] == key)
    assert event["event"] == "prefect.asset.materialization.succeeded"
    related = {
        r["prefect.resource.id"] for r in event["related"] if r.get("prefect.resource.role") == "asset"
    }
    assert related == {
        "duckdb://warehouse/jaffle_lite/orders",
        "duckdb://warehouse/jaffle_lite/stg_customers",
    }
    assert "dbt-jaffle-lite" in artifacts(state.state_details.flow_run_id)


def test_packages_install_once_and_options_reach_dbt(warehouse: DuckWarehouse, projects: Path) -> None:
    marker = warehouse.data_dir / "dbt" / PROJECT / "project" / "dbt_packages" / ".platform-deps.sha256"
    assert dbt_build(project=PROJECT, command="seed", return_state=True).is_completed()
    installed = marker.stat().st_mtime_ns

    # Unchanged packages.yml: no second `dbt deps`. select and full_refresh reach dbt.
    state = dbt_build(
        project=PROJECT, command="seed", select="raw_orders", full_refresh=True, return_state=True
    )
    assert state.is_completed(), state.message
    assert state.result()["node_statuses"] == {"success": 1}
    assert marker.stat().st_mtime_ns == installed
    assert set(_node_runs(state.state_details.flow_run_id, 1)) == {"seed raw_orders"}

    # An edited packages.yml is installed again; exclude reaches dbt too.
    packages = projects / PROJECT / "packages.yml"
    packages.write_text(packages.read_text() + "# pinned by the data team\n")
    state = dbt_build(
        project=PROJECT, command="seed", exclude=["raw_orders", "raw_payments"], return_state=True
    )
    assert state.is_completed(), state.message
    assert state.result()["node_statuses"] == {"success": 1}
    assert marker.stat().st_mtime_ns != installed


def test_every_command_runs_its_nodes_into_the_chosen_schema(
    warehouse: DuckWarehouse, projects: Path
) -> None:
    def run(command: str, **options: Any) -> dict[str, int]:
        state = dbt_build(
            project=PROJECT, command=command, target_schema="jaffle_dev", **options, return_state=True
        )
        assert state.is_completed(), state.message
        return state.result()["node_statuses"]

    assert run("seed") == {"success": 3}
    assert run("run", select="stg_orders stg_customers") == {"success": 2}
    assert run("test", select="stg_customers") == {"pass": 2}
    assert run("snapshot") == {"success": 1}
    # A selection that matches nothing is a mistake, not a success.
    state = dbt_build(project=PROJECT, command="run", select="stg_order", return_state=True)
    assert state.is_failed() and "select stg_order / exclude (none) matches no run node" in state.message
    assert warehouse.count("jaffle_dev_raw.raw_orders") == 7
    assert warehouse.count("jaffle_dev.stg_orders") == warehouse.count("jaffle_dev.orders_snapshot") == 7
    assert not warehouse.query("select * from information_schema.tables where table_schema = 'jaffle_lite'")


def test_a_failing_node_fails_the_run_naming_it_and_skips_what_depends_on_it(
    warehouse: DuckWarehouse, projects: Path
) -> None:
    state = dbt_build(project=PROJECT, vars={"strict_payments": True}, return_state=True)
    assert state.is_failed()
    assert "test assert_payments_are_positive (fail)" in state.message, state.message
    assert "1 of 21 nodes failed, 6 skipped" in state.message, state.message

    runs = _node_runs(state.state_details.flow_run_id, 21)
    failed = [name for name, tr in runs.items() if tr.state.is_failed()]
    assert failed == ["test assert_payments_are_positive"]
    # What reads stg_payments did not run: shown as Skipped, naming why.
    skipped = {name for name, tr in runs.items() if tr.state.name == "Skipped"}
    assert {"model orders", "model customers", "test unique_customers_customer_id"} <= skipped
    assert runs["model stg_orders"].state.is_completed()
    # A failing test is not transient: the dbt step ran once.
    steps = [tr for tr in task_runs(state.state_details.flow_run_id) if tr.name.startswith("dbt ")]
    assert [tr.run_count for tr in steps] == [1]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"project": "jaffle"}, "No dbt project 'jaffle' in"),
        ({"project": "../jaffle_lite"}, "projects there: jaffle_lite, jaffle_utils"),
        (
            {"project": PROJECT, "command": "test", "full_refresh": True},
            "full_refresh does not apply to `dbt test`",
        ),
        (
            {"project": PROJECT, "target_schema": "analytics; drop"},
            "target_schema must be a plain identifier",
        ),
    ],
)
def test_bad_parameters_fail_before_anything_runs(
    warehouse: DuckWarehouse, projects: Path, parameters: dict[str, Any], message: str
) -> None:
    state = dbt_build(**parameters, return_state=True)
    assert state.is_failed()
    assert message in state.message, state.message
    assert not (warehouse.data_dir / "dbt").exists()
    assert not warehouse.path.exists()


def test_an_unknown_command_is_refused_naming_the_commands(projects: Path) -> None:
    from prefect.exceptions import ParameterTypeError

    expected = "command: Input should be 'build', 'run', 'test', 'seed' or 'snapshot'"
    with pytest.raises(ParameterTypeError, match=expected):
        dbt_build.validate_parameters({"project": PROJECT, "command": "compile"})
