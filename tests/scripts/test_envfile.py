"""scripts/lib/envfile.py: the one .env reader and writer (host commands and the flow entrypoint)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.lib import envfile
from tests.support import REPO

EXAMPLE = "# comment kept\nA_SECRET=__GENERATE__\nAUTH=admin:__GENERATE__\nPLAIN=1\nEMPTY=\n"


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    example = tmp_path / ".env.example"
    example.write_text(EXAMPLE)
    return tmp_path / ".env", example


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts/lib/envfile.py"), *args], capture_output=True, text=True
    )


def test_first_run_generates_distinct_secrets_with_mode_0600(paths: tuple[Path, Path]) -> None:
    env, example = paths
    assert envfile.ensure(env, example, {})
    values = envfile.parse(env.read_text())
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "__GENERATE__" not in env.read_text() and "# comment kept" in env.read_text()
    secret, password = values["A_SECRET"], values["AUTH"].split(":", 1)[1]
    assert values["AUTH"].startswith("admin:") and len(secret) == 48 and secret != password
    other = paths[0].with_name("other.env")
    envfile.ensure(other, example, {})
    assert envfile.parse(other.read_text())["A_SECRET"] != secret


def test_existing_values_are_kept_and_new_variables_added(paths: tuple[Path, Path]) -> None:
    env, example = paths
    env.write_text("A_SECRET=mine\nPLAIN=2\n")
    env.chmod(0o644)
    envfile.ensure(env, example, {"PLAIN": "3"})
    values = envfile.parse(env.read_text())
    assert values["A_SECRET"] == "mine" and values["PLAIN"] == "2"
    assert values["AUTH"].startswith("admin:") and len(values["AUTH"]) > len("admin:")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert not envfile.ensure(env, example, {}), "a second merge must change nothing"


def test_overwrite_and_force(paths: tuple[Path, Path]) -> None:
    env, example = paths
    env.write_text("A_SECRET=old\nPLAIN=old\n")
    envfile.ensure(env, example, {"A_SECRET": "new"}, overwrite=True, forced={"PLAIN": "derived"})
    values = envfile.parse(env.read_text())
    assert values["A_SECRET"] == "new" and values["PLAIN"] == "derived"


def test_provided_secret_is_used_instead_of_generating(paths: tuple[Path, Path]) -> None:
    env, example = paths
    envfile.ensure(env, example, {"A_SECRET": "from-secrets-manager"})
    assert envfile.parse(env.read_text())["A_SECRET"] == "from-secrets-manager"


def test_cli_rejects_bad_json_and_leaves_the_file(paths: tuple[Path, Path], tmp_path: Path) -> None:
    env, example = paths
    env.write_text("A_SECRET=keep\n")
    bad = tmp_path / "secret.json"
    for content, expected in (
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"1BAD": "x"}', "not a valid"),
    ):
        bad.write_text(content)
        result = run_cli("ensure", "--env", str(env), "--example", str(example), "--from-json", str(bad))
        assert result.returncode == 2 and expected in result.stderr
        assert env.read_text() == "A_SECRET=keep\n"


def test_cli_never_prints_values(paths: tuple[Path, Path]) -> None:
    env, example = paths
    result = run_cli("ensure", "--env", str(env), "--example", str(example), "--set", "A_SECRET=s3cr3t-value")
    assert result.returncode == 0
    assert "s3cr3t-value" not in result.stdout + result.stderr
    assert envfile.parse(env.read_text())["A_SECRET"] == "s3cr3t-value"


def test_multiline_value_is_rejected(paths: tuple[Path, Path]) -> None:
    env, example = paths
    with pytest.raises(envfile.EnvFileError, match="line break"):
        envfile.ensure(env, example, {"PLAIN": "a\nB=evil"})
    assert not env.exists()


def test_dump_prints_every_setting_as_compose_reads_it_one_per_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# c\nA=1\nexport B='two words'\nC=\"x=y\"\nEMPTY=\nA=last\n")
    result = run_cli("dump", "--env", str(env))
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["A=last", "B=two words", "C=x=y", "EMPTY="]
    missing = run_cli("dump", "--env", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "run ./scripts/up once" in missing.stderr
