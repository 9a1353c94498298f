"""The dbt workspace under DATA_DIR/dbt/<name>/ (flows/dbt_project.py) and the small rules of the
dbt runner and flow that need no dbt run: links that follow the project, local packages outside it,
the platform profile (no secret on disk), settings, parameters and asset keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from flows.dbt_build import DbtBuildRequest, dbt_threads
from flows.dbt_project import (
    PLATFORM_PROFILE,
    DbtProjectError,
    DbtWorkspace,
    find_project,
    platform_profile,
    project_names,
    projects_dir,
)
from flows.dbt_runner import asset_key, asset_name


def _project(root: Path, name: str, config: str = "", packages: str | None = None) -> Path:
    folder = root / name
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "a.sql").write_text("select 1 as id\n")
    (folder / "dbt_project.yml").write_text(f"name: {name}\nconfig-version: 2\n{config}")
    if packages is not None:
        (folder / "packages.yml").write_text(packages)
    return folder


def test_workspace_links_the_project_and_follows_its_changes(tmp_path: Path) -> None:
    source = _project(tmp_path / "projects", "p", "profile: laptop\n")
    (source / "profiles.yml").write_text("laptop: {}\n")
    (source / "target").mkdir()  # a laptop's leftovers are not linked
    (source / "seeds").mkdir()
    workspace = DbtWorkspace(source=source, root=tmp_path / "data" / "dbt" / "p")

    workspace.prepare("duckdb", "p", threads=None)
    farm = workspace.project_dir
    assert sorted(p.name for p in farm.iterdir()) == ["dbt_project.yml", "models", "seeds"]
    assert all((farm / n).is_symlink() for n in ("dbt_project.yml", "models", "seeds"))
    assert (farm / "models" / "a.sql").read_text() == "select 1 as id\n"
    profile = yaml.safe_load((workspace.profiles_dir / "profiles.yml").read_text())
    assert list(profile) == ["laptop"] and profile["laptop"]["target"] == "duckdb"
    assert profile["laptop"]["outputs"]["duckdb"]["schema"] == "p"

    # A folder removed from the project disappears from the workspace; a new one appears.
    (source / "seeds").rmdir()
    (source / "macros").mkdir()
    workspace.prepare("duckdb", "p", threads=2)
    assert sorted(p.name for p in farm.iterdir()) == ["dbt_project.yml", "macros", "models"]
    profile = yaml.safe_load((workspace.profiles_dir / "profiles.yml").read_text())
    assert profile["laptop"]["outputs"]["duckdb"]["threads"] == 2


def test_local_packages_outside_the_project_are_made_absolute(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    inside = "packages:\n  - local: vendored/helpers\n"
    outside = "packages:\n  - local: ../shared\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n"
    near = _project(root, "near", packages=inside)
    far = _project(root, "far", packages=outside)
    for source in (near, far):
        DbtWorkspace(source=source, root=tmp_path / "data" / source.name).prepare("duckdb", "x", None)
    # Inside the project: the path resolves the same from the workspace, so the file is linked.
    assert (tmp_path / "data" / "near" / "project" / "packages.yml").is_symlink()
    # ../shared would resolve against the workspace: it is rewritten to the real folder.
    rewritten = tmp_path / "data" / "far" / "project" / "packages.yml"
    assert not rewritten.is_symlink()
    packages = yaml.safe_load(rewritten.read_text())["packages"]
    assert packages[0] == {"local": str((root / "shared").resolve())}
    assert packages[1] == {"package": "dbt-labs/dbt_utils", "version": "1.3.0"}


def test_packages_are_installed_only_when_their_definition_changes(tmp_path: Path) -> None:
    source = _project(tmp_path / "projects", "p", packages="packages:\n  - local: ../lib\n")
    workspace = DbtWorkspace(source=source, root=tmp_path / "data")
    workspace.prepare("duckdb", "p", None)
    calls: list[Path] = []

    def deps(project_dir: Path, log_dir: Path) -> None:
        calls.append(project_dir)
        (project_dir / "dbt_packages").mkdir(exist_ok=True)

    assert workspace.install_packages(deps, "1.12.0", tmp_path / "logs")
    assert not workspace.install_packages(deps, "1.12.0", tmp_path / "logs")
    assert workspace.install_packages(deps, "1.13.0", tmp_path / "logs")  # another dbt
    (source / "packages.yml").write_text("packages:\n  - local: ../lib2\n")
    workspace.prepare("duckdb", "p", None)
    assert workspace.install_packages(deps, "1.13.0", tmp_path / "logs")
    assert calls == [workspace.project_dir] * 3

    # Without packages.yml nothing is installed, and what was installed goes.
    (source / "packages.yml").unlink()
    workspace.prepare("duckdb", "p", None)
    assert not workspace.install_packages(deps, "1.13.0", tmp_path / "logs")
    assert not (workspace.project_dir / "dbt_packages").exists()


def test_platform_profile_points_any_profile_name_at_the_warehouse_without_secrets() -> None:
    profile = platform_profile("their_profile", "snowflake", "ANALYTICS", threads=8)
    output = profile["their_profile"]["outputs"]["snowflake"]
    assert profile["their_profile"]["target"] == "snowflake"
    assert (output["schema"], output["threads"], output["type"]) == ("ANALYTICS", 8, "snowflake")
    # Credentials are read from the environment when dbt renders the profile: never written out.
    assert output["password"] == "{{ env_var('SNOWFLAKE_PASSWORD', '') }}"
    assert all("env_var(" in str(output[k]) for k in ("account", "user", "private_key", "database"))
    template = yaml.safe_load(PLATFORM_PROFILE.read_text())["platform"]["outputs"]
    from flows.warehouses import warehouse_kinds

    assert set(template) == set(warehouse_kinds()), "every warehouse needs its dbt output"
    with pytest.raises(DbtProjectError, match="no output for WAREHOUSE=bigquery"):
        platform_profile("p", "bigquery", "x", None)


def test_projects_are_found_by_folder_name_and_a_wrong_name_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "projects"
    _project(root, "alpha")
    _project(root, "beta")
    (root / "not_a_project").mkdir()
    monkeypatch.setenv("DBT_PROJECTS_DIR", str(root))
    assert projects_dir() == root.resolve()
    assert project_names() == ["alpha", "beta"]
    assert find_project("beta") == root.resolve() / "beta"
    for bad in ("gamma", "../alpha", "alpha/models", ".hidden"):
        with pytest.raises(DbtProjectError, match="projects there: alpha, beta"):
            find_project(bad)
    monkeypatch.delenv("DBT_PROJECTS_DIR")
    assert "shop" in project_names()


def test_request_checks_and_dbt_options() -> None:
    request = DbtBuildRequest(
        project="shop", select="stg_orders+ tag:daily", exclude=["a", "b c"], full_refresh=True
    )
    assert request.options() == [
        "--select",
        "stg_orders+",
        "tag:daily",
        "--exclude",
        "a",
        "b",
        "c",
        "--full-refresh",
    ]
    assert request.schema_name == "shop"
    assert DbtBuildRequest(project="shop", target_schema="analytics_demo").schema_name == "analytics_demo"
    with pytest.raises(ValueError, match="full_refresh does not apply to `dbt snapshot`"):
        DbtBuildRequest(project="shop", command="snapshot", full_refresh=True)
    with pytest.raises(ValueError, match="No dbt project 'shopp'"):
        DbtBuildRequest(project="shopp")


def test_dbt_threads_setting() -> None:
    assert dbt_threads({}) is None and dbt_threads({"DBT_THREADS": " "}) is None
    assert dbt_threads({"DBT_THREADS": "8"}) == 8
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="DBT_THREADS must be a whole number of at least 1"):
            dbt_threads({"DBT_THREADS": bad})


@pytest.mark.parametrize(
    "relation",
    ['"warehouse"."analytics_demo"."fct_orders"', "SHOP_DB.ANALYTICS.FCT_ORDERS", '"db"."s"."we{ird}%name"'],
)
def test_asset_keys_are_prefect_dbts(relation: str) -> None:
    # Restated to save importing prefect_dbt in every run; customer_scores relies on these keys.
    from prefect_dbt.utilities import format_asset_name, format_resource_id

    assert asset_key("duckdb", relation) == format_resource_id("duckdb", relation)
    assert asset_name(relation) == format_asset_name(relation)


def test_the_flow_module_imports_without_dbt() -> None:
    import subprocess
    import sys

    from tests.support import REPO

    heavy = ("dbt", "duckdb", "prefect_dbt")
    code = f"import sys, flows.dbt_build; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert out.stdout.strip() == "[]"
