"""scripts/lib/upgrade.py's plan (what --dry-run shows) on real git repositories: the newest tag of
origin by default, the commits, the image inputs and locked versions that change, migrations; and
the rollback image names. The upgrade itself runs in tests/e2e/test_operations.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts.lib.stack import OpsError, Stack
from scripts.lib.upgrade import describe, locked_versions, make_plan, previous_name

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "init.defaultBranch=main"]


def lock(prefect: str, dlt: str) -> str:
    return (
        'version = 1\n\n[[package]]\nname = "dlt"\nversion = "' + dlt + '"\n\n'
        '[[package]]\nname = "prefect"\nversion = "' + prefect + '"\nsource = { registry = "x" }\n'
    )


def commit(repo: Path, message: str, files: dict[str, str], tag: str | None = None) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", message], check=True)
    if tag:
        subprocess.run([*GIT, "-C", str(repo), "tag", tag], check=True)
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A host's checkout at v0.1.0 whose origin has v0.2.0 and v0.10.0 (newer by version, not by name)."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    subprocess.run([*GIT, "init", "-q", str(upstream)], check=True)
    commits = {
        "v0.1.0": commit(
            upstream, "first", {"uv.lock": lock("3.8.8", "1.31.0"), "flows/a.py": "x = 1\n"}, "v0.1.0"
        )
    }
    host = tmp_path / "host"
    subprocess.run([*GIT, "clone", "-q", str(upstream), str(host)], check=True)
    commits["v0.2.0"] = commit(upstream, "flows only", {"flows/a.py": "x = 2\n"}, "v0.2.0")
    commits["v0.10.0"] = commit(
        upstream,
        "prefect 3.9",
        {"uv.lock": lock("3.9.0", "1.31.0"), "docker/platform/Dockerfile": "FROM scratch\n"},
        "v0.10.0",
    )
    return host, commits


def test_default_target_is_the_newest_tag_of_origin(checkout: tuple[Path, dict[str, str]]) -> None:
    host, commits = checkout
    plan = make_plan(Stack(root=host), None)
    assert plan.ref == "v0.10.0" and plan.target == commits["v0.10.0"] and plan.current == commits["v0.1.0"]
    assert [c.split(" ", 1)[1] for c in plan.commits] == ["prefect 3.9", "flows only"]
    assert plan.image_inputs_changed == ["docker/platform/Dockerfile", "uv.lock"]
    assert plan.versions == ["prefect 3.8.8 -> 3.9.0"] and plan.prefect == ("3.8.8", "3.9.0")
    lines = describe(plan, "d4a7e1c93f52")
    assert any("Prefect 3.8.8 -> 3.9.0: prefect-migrate applies its new revisions" in line for line in lines)
    assert plan.branch == "main"  # a rollback returns to the branch, not a detached commit


def test_a_named_ref_without_image_or_version_changes(checkout: tuple[Path, dict[str, str]]) -> None:
    host, commits = checkout
    subprocess.run(["git", "-C", str(host), "fetch", "-q", "--tags", "origin"], check=True)
    plan = make_plan(Stack(root=host), "v0.2.0")
    assert plan.target == commits["v0.2.0"] and plan.image_inputs_changed == [] and plan.versions == []
    lines = describe(plan, "abc")
    assert "no image input changed: the rebuild reuses every cached layer" in lines
    assert "database migrations: none (Prefect stays 3.8.8; database at revision abc)" in lines


def test_unknown_refs_and_non_checkouts_are_refused(
    checkout: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    host, _ = checkout
    with pytest.raises(OpsError, match="no tag, branch or commit"):
        make_plan(Stack(root=host), "v9.9.9")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(OpsError, match="not a git checkout"):
        make_plan(Stack(root=plain), "v0.2.0")


def test_rollback_image_names() -> None:
    assert previous_name("ppe2e1/platform:local") == "ppe2e1/platform:previous"
    assert (
        previous_name("registry.example.com:5000/team/platform:1.2")
        == "registry.example.com:5000/team/platform:previous"
    )
    assert previous_name("team/platform") == "team/platform:previous"


def test_locked_versions_are_read_from_uv_lock() -> None:
    assert locked_versions(lock("3.8.8", "1.31.0")) == {"dlt": "1.31.0", "prefect": "3.8.8"}
    real = (Path(__file__).resolve().parents[2] / "uv.lock").read_text()
    assert locked_versions(real)["prefect"] == "3.8.8"
