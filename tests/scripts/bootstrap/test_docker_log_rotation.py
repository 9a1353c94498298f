"""scripts/bootstrap/docker-log-rotation merges into daemon.json without clobbering it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

SCRIPT = REPO / "scripts" / "bootstrap" / "docker-log-rotation"


def rotate(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--file", str(path), *args], capture_output=True, text=True, timeout=30
    )


def test_creates_daemon_json_with_rotation(tmp_path: Path) -> None:
    target = tmp_path / "docker" / "daemon.json"
    result = rotate(target)
    assert result.returncode == 0 and result.stdout.strip().endswith("updated")
    assert json.loads(target.read_text()) == {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }
    second = rotate(target)
    assert second.stdout.strip().endswith("unchanged")


def test_keeps_every_existing_setting(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(
        json.dumps({"data-root": "/data/docker", "log-opts": {"max-file": "7", "compress": "true"}})
    )
    assert rotate(target, "--max-size", "20m").returncode == 0
    assert json.loads(target.read_text()) == {
        "data-root": "/data/docker",
        "log-driver": "json-file",
        "log-opts": {"max-size": "20m", "max-file": "7", "compress": "true"},
    }


def test_leaves_another_log_driver_alone(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    original = json.dumps({"log-driver": "awslogs", "log-opts": {"awslogs-group": "platform"}})
    target.write_text(original)
    result = rotate(target)
    assert result.returncode == 0
    assert "log-driver is 'awslogs'" in result.stderr
    assert target.read_text() == original


def test_invalid_json_is_an_error_and_the_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_text('{"data-root": "/data",}')
    result = rotate(target)
    assert result.returncode == 2
    assert "is not valid JSON" in result.stderr and "fix or remove it" in result.stderr
    assert target.read_text() == '{"data-root": "/data",}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]
