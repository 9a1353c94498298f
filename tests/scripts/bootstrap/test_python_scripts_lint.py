"""`ruff check .` skips Python scripts without a .py suffix: lint the bootstrap's here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

SCRIPTS = [
    REPO / "scripts" / "bootstrap" / "secrets-to-env",
    REPO / "scripts" / "bootstrap" / "docker-log-rotation",
]
RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_extensionless_python_scripts_pass_ruff(command: list[str]) -> None:
    result = subprocess.run(
        [str(RUFF), *command, *map(str, SCRIPTS)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
