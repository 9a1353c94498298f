"""A throwaway Debian 12 "EC2 host" container for running ec2-userdata.sh for real.

With systemd=True it boots systemd as PID 1 (no --privileged needed on this engine: cgroup v1
mounted read-only plus tmpfs /run), so the unit can be enabled, verified, started and stopped.
It shares the host's network namespace, so the fake IMDS and moto on 127.0.0.1 answer inside.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path

from tests.support import REPO

IMAGE_DIR = REPO / "docker" / "bootstrap-test"


def build_image() -> str:
    """Builds the test image, tagged by a hash of its inputs so an edit forces a rebuild."""
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    tag = f"prefect-platform/bootstrap-test:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, str(IMAGE_DIR)],
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            check=True,
            capture_output=True,
            timeout=600,
        )
        # Drop images of earlier versions of the test image: they would pile up on CI hosts.
        listed = subprocess.run(
            ["docker", "images", "prefect-platform/bootstrap-test", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        stale = [name for name in listed if name != tag]
        if stale:
            subprocess.run(["docker", "rmi", *stale], capture_output=True)
    return tag


class ContainerHost:
    def __init__(self, image: str, repo_dir: Path, systemd: bool) -> None:
        self.name = f"pp-bootstrap-test-{uuid.uuid4().hex[:10]}"
        command = ["docker", "run", "-d", "--name", self.name, "--network", "host"]
        command += ["-v", f"{repo_dir}:/src:ro"]
        if systemd:
            command += ["--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"]
            command += [image]
        else:
            command += [image, "sleep", "infinity"]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        if systemd:
            self._wait_for_systemd()

    def reboot(self) -> None:
        """Restarts the container: systemd shuts down cleanly (stopping units), then boots again."""
        subprocess.run(
            ["docker", "restart", "-t", "60", self.name], check=True, capture_output=True, timeout=120
        )
        self._wait_for_systemd()

    def _wait_for_systemd(self) -> None:
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running 2>/dev/null || true").stdout.strip()
            if state in {"running", "degraded"}:
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"systemd in {self.name} did not finish booting (state {state!r}). This harness mounts "
            "cgroup v1 read-only; on a cgroup v2 engine systemd may need --cgroupns=host and a "
            "read-write /sys/fs/cgroup (see `docker logs` of the container)"
        )

    def sh(
        self, script: str, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "exec"]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        command += [self.name, "bash", "-c", script]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def run_userdata(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Runs the user data as cloud-init does: as root, from a copy outside the checkout."""
        self.sh("install -D -m 0700 /src/repo/ec2-userdata.sh /var/lib/cloud/instance/user-data.txt")
        return self.sh("/var/lib/cloud/instance/user-data.txt", env=env)

    def read(self, path: str) -> str:
        result = self.sh(f"cat {shlex.quote(path)}")
        assert result.returncode == 0, result.stderr
        return result.stdout

    def exists(self, path: str) -> bool:
        return self.sh(f"test -e {shlex.quote(path)}").returncode == 0

    def snapshot(self, *roots: str, exclude: tuple[str, ...] = ()) -> dict[str, str]:
        """Path -> type, mode, owner, size, mtime and content hash of everything under ``roots``."""
        prune = " -o ".join(f"-path {shlex.quote(p)}" for p in exclude) or "-false"
        script = (
            f"find {' '.join(map(shlex.quote, roots))} \\( {prune} \\) -prune -o "
            r"-printf '%p|%y|%m|%u|%g|%s|%T@|%l\n' | sort | while IFS='|' read -r p rest; do "
            r'if [ -f "$p" ]; then h=$(sha256sum "$p" | cut -c1-64); else h=-; fi; echo "$p|$rest|$h"; done'
        )
        result = self.sh(script)
        assert result.returncode == 0, result.stderr
        return {line.split("|", 1)[0]: line for line in result.stdout.splitlines()}

    def logs(self) -> str:
        return self.sh(
            "cat /var/log/prefect-platform-bootstrap.log 2>&1; journalctl -n 50 --no-pager 2>&1"
        ).stdout

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, timeout=60)
