"""services/flow_runner/entrypoint.py: how flow-run containers read the mounted settings file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scripts.lib.envfile import parse
from tests.support import REPO

ENTRYPOINT = REPO / "services" / "flow_runner" / "entrypoint.py"


def test_parse_handles_comments_quotes_export_and_empty_values() -> None:
    text = "# c\nA=1\nexport B='two words'\nC=\"x=y\"\nEMPTY=\n  \nnot a line\nA=2\n"
    assert parse(text) == {"A": "2", "B": "two words", "C": "x=y", "EMPTY": ""}


def test_settings_reach_the_command_but_not_the_database_password(tmp_path: Path) -> None:
    settings = tmp_path / "platform.env"
    settings.write_text("SNOWFLAKE_PASSWORD=sf\nPOSTGRES_PASSWORD=pg\nWAREHOUSE=snowflake\n")
    env = {
        **os.environ,
        "PLATFORM_SETTINGS_FILE": str(settings),
        "WAREHOUSE": "duckdb",
        "RUN_AS_UID": str(os.getuid()),
    }
    env.pop("SNOWFLAKE_PASSWORD", None)
    env.pop("POSTGRES_PASSWORD", None)
    script = (
        "import os; e = os.environ;"
        "print(e.get('SNOWFLAKE_PASSWORD'), e.get('POSTGRES_PASSWORD'), e['WAREHOUSE'])"
    )
    out = subprocess.run(
        [sys.executable, str(ENTRYPOINT), sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # The file fills what is missing; the job template's own value (WAREHOUSE) wins.
    assert out == ["sf", "None", "duckdb"]


def test_missing_settings_file_is_fine_and_no_command_is_an_error(tmp_path: Path) -> None:
    env = {**os.environ, "PLATFORM_SETTINGS_FILE": str(tmp_path / "absent"), "RUN_AS_UID": str(os.getuid())}
    script = [sys.executable, str(ENTRYPOINT)]
    assert subprocess.run([*script, "true"], env=env).returncode == 0
    result = subprocess.run(script, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "no command" in result.stderr
