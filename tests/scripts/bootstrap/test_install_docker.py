"""scripts/install-docker: distribution dispatch (--plan prints, changes nothing) and detection.

The real install paths need Docker's apt repository or GitHub, which these machines cannot reach:
--plan shows which commands each supported distribution would get, and the detection path runs
for real against a test double of the docker CLI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

SCRIPT = REPO / "scripts" / "bootstrap" / "install-docker"
# The one place the Compose version is pinned.
COMPOSE_VERSION = re.search(r"^COMPOSE_VERSION=(\S+)$", SCRIPT.read_text(), re.M).group(1)  # type: ignore[union-attr]
FAKE_DOCKER = REPO / "docker" / "bootstrap-test" / "fake-docker"

OS_RELEASES = {
    "debian-12": 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
    "ubuntu-22.04": 'ID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\nUBUNTU_CODENAME=jammy\n',
    "ubuntu-24.04": 'ID=ubuntu\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\nUBUNTU_CODENAME=noble\n',
    "al2023": 'NAME="Amazon Linux"\nID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\n',
    "centos-7": 'ID="centos"\nVERSION_ID="7"\n',
}


def plan(tmp_path: Path, distro: str, arch: str = "x86_64") -> subprocess.CompletedProcess[str]:
    os_release = tmp_path / "os-release"
    os_release.write_text(OS_RELEASES[distro])
    env = {**os.environ, "OS_RELEASE": str(os_release), "INSTALL_DOCKER_ARCH": arch}
    return subprocess.run([str(SCRIPT), "--plan"], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("distro", "repo_line"),
    [
        ("debian-12", "https://download.docker.com/linux/debian bookworm stable"),
        ("ubuntu-22.04", "https://download.docker.com/linux/ubuntu jammy stable"),
        ("ubuntu-24.04", "https://download.docker.com/linux/ubuntu noble stable"),
    ],
)
def test_debian_family_uses_dockers_apt_repository(tmp_path: Path, distro: str, repo_line: str) -> None:
    result = plan(tmp_path, distro)
    assert result.returncode == 0, result.stderr
    assert repo_line in result.stdout
    assert "signed-by=/etc/apt/keyrings/docker.asc" in result.stdout
    assert "expects fingerprint 9DC858229FC7DD38854AE2D88D81803C0EBFCD88" in result.stdout
    assert "docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin" in result.stdout
    assert "dnf" not in result.stdout


@pytest.mark.parametrize(
    ("arch", "sha"),
    [
        ("x86_64", "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"),
        ("aarch64", "d26373b19e89160546d15407516cc59f453030d9bc5b43ba7faf16f7b4980137"),
    ],
)
def test_amazon_linux_gets_dnf_docker_and_a_pinned_verified_compose(
    tmp_path: Path, arch: str, sha: str
) -> None:
    result = plan(tmp_path, "al2023", arch)
    assert result.returncode == 0, result.stderr
    assert "+ dnf install -y docker" in result.stdout
    assert f"releases/download/v{COMPOSE_VERSION}/docker-compose-linux-{arch}" in result.stdout
    assert f"expects {sha}" in result.stdout
    assert "/usr/local/lib/docker/cli-plugins/docker-compose" in result.stdout
    assert "apt-get" not in result.stdout


def test_pinned_x86_64_checksum_matches_the_compose_binary_on_this_machine() -> None:
    """The container host installs the pinned Compose from its PyPI wheel, the same bytes as the release."""
    plugin = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
    if not plugin.exists():
        pytest.skip("no Compose v2 plugin binary at /usr/local/lib/docker/cli-plugins on this machine")
    version = subprocess.run([str(plugin), "version", "--short"], capture_output=True, text=True)
    if version.stdout.strip().lstrip("v") != COMPOSE_VERSION:
        pytest.skip(f"local Compose is {version.stdout.strip()}, not the pinned {COMPOSE_VERSION}")
    digest = subprocess.run(["sha256sum", str(plugin)], capture_output=True, text=True, check=True)
    assert digest.stdout.split()[0] in SCRIPT.read_text()


def test_unsupported_distribution_fails_with_what_to_do(tmp_path: Path) -> None:
    result = plan(tmp_path, "centos-7")
    assert result.returncode == 1
    assert "unsupported distribution 'centos 7'" in result.stderr
    assert "Install Docker Engine and Compose v2 yourself" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="install-docker refuses to run as non-root")
def test_existing_docker_and_compose_are_detected_and_left_alone(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKE_DOCKER, bin_dir / "docker")
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DOCKER_LOG": str(calls),
        "INSTALL_DOCKER_SCRIPT": str(SCRIPT),
    }
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"found Docker 27.3.1 and Compose {COMPOSE_VERSION}: nothing to install" in result.stdout
    assert "Docker Engine 27.3.1 is running" in result.stdout
    # Only questions were asked: no install, no compose action.
    asked = [line.split("args=", 1)[1] for line in calls.read_text().splitlines()]
    assert all(a.startswith(("version", "compose version")) for a in asked), asked
