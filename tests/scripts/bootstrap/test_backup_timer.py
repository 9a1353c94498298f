"""scripts/bootstrap/install-backup-timer: the daily backup's systemd timer, rendered, checked by
systemd-analyze, installed idempotently and enabled (systemctl recorded by a stand-in on PATH)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

INSTALLER = REPO / "scripts" / "bootstrap" / "install-backup-timer"


@pytest.fixture
def systemd(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    units, bin_dir, calls = tmp_path / "units", tmp_path / "bin", tmp_path / "systemctl.log"
    units.mkdir()
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    # Records each call; `is-enabled` answers "no" until an `enable` was recorded.
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'if [ "$1" = is-enabled ]; then grep -q "^enable" {calls}; exit $?; fi\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "SYSTEMD_DIR": str(units), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return units, calls, env


def install(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INSTALLER), *args], env=env, capture_output=True, text=True, timeout=60)


def test_installs_a_daily_persistent_timer_for_the_backup(systemd: tuple[Path, Path, dict[str, str]]) -> None:
    units, calls, env = systemd
    user = getpass.getuser()
    first = install(env, str(REPO), user)
    assert first.returncode == 0, first.stderr
    service = (units / "prefect-platform-backup.service").read_text()
    timer = (units / "prefect-platform-backup.timer").read_text()
    assert f"ExecStart={REPO}/scripts/backup --notify-on-failure" in service
    assert f"User={user}" in service and f"WorkingDirectory={REPO}" in service
    assert "Type=oneshot" in service and "Requires=docker.service" in service
    assert "OnCalendar=*-*-* 03:00:00 UTC" in timer
    assert "RandomizedDelaySec=30min" in timer and "Persistent=true" in timer
    assert "WantedBy=timers.target" in timer
    assert "enable prefect-platform-backup.timer" in calls.read_text()
    again = install(env, str(REPO), user)
    assert again.returncode == 0 and again.stdout.count("is up to date") == 2
    assert "prefect-platform-backup.timer is enabled" in again.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(systemd: tuple[Path, Path, dict[str, str]]) -> None:
    units, _, env = systemd
    assert install(env, str(REPO), getpass.getuser()).returncode == 0
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", "*-*-* 03:00:00 UTC"], capture_output=True, text=True, check=False
    )
    assert calendar.returncode == 0 and "Next elapse" in calendar.stdout, calendar.stderr
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(u) for u in sorted(units.iterdir()))],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"},
        check=False,
    )
    assert verify.returncode == 0 and "prefect-platform-backup" not in verify.stderr, verify.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["relative/dir", "root"], "must be an absolute path"),
        (["/nonexistent-checkout", "root"], "scripts/backup is missing"),
        ([str(REPO), "no-such-user-xyz"], "does not exist"),
    ],
)
def test_bad_arguments_are_refused(
    systemd: tuple[Path, Path, dict[str, str]], args: list[str], message: str
) -> None:
    units, _, env = systemd
    result = install(env, *args)
    assert result.returncode == 1 and message in result.stderr
    assert list(units.iterdir()) == []
