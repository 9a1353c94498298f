#!/usr/bin/env python3
"""Whether a later ./scripts/up has anything to do: what the last `up` that succeeded left running.

`docker compose up` runs the one-shots (migrations, init, deploy) again on every call, although with
nothing changed they only repeat themselves. scripts/up records, after an `up` that succeeded, the
project's containers (each one's id, start, compose configuration hash and image id) and a digest of
flows/ (the deployments and the code they import); a later `up` leaves the stack as it is when:
  * the same containers are there, none restarted or recreated since (a restore, a reboot, `down`);
  * compose's configuration of every service (.env values, docker-compose.yml, profiles) is the
    one its container was created with, and every image is the one its container runs (a rebuild);
  * flows/ is the same;
  * every service is running (healthy where it has a check) or exited 0.
Standard library only (runs on Amazon Linux 2023's Python 3.9). Usage:
  up_state.py save PROJECT STATE_FILE        record the current state (after a successful up)
  up_state.py unchanged PROJECT STATE_FILE   exit 0 when nothing changed, else 1
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FLOWS_SKIPPED = {"__pycache__", "target", "logs", "dbt_packages"}  # what runs write beside the code
CONFIG_HASH = "com.docker.compose.config-hash"
SERVICE = "com.docker.compose.service"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def containers(project: str) -> list[dict[str, Any]]:
    ids = docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", "label=com.docker.compose.oneoff=False",
    ).split()  # fmt: skip
    return json.loads(docker("inspect", *ids)) if ids else []


def flows_digest(flows: Path) -> str:
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(flows):
        dirs[:] = sorted(d for d in dirs if d not in FLOWS_SKIPPED)
        for name in sorted(files):
            path = Path(folder, name)
            digest.update(str(path.relative_to(flows)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(found: list[dict[str, Any]], flows: Path) -> str:
    rows = sorted(
        " ".join(
            (
                c["Name"],
                c["Id"],
                c["State"]["StartedAt"],
                str(c["Config"]["Labels"].get(CONFIG_HASH)),
                c["Image"],
            )
        )
        for c in found
    )
    return hashlib.sha256("\n".join([*rows, flows_digest(flows)]).encode()).hexdigest()


def settled(container: dict[str, Any]) -> bool:
    state = container["State"]
    if state["Status"] == "running":
        return state.get("Health", {}).get("Status", "healthy") == "healthy"
    return state["Status"] == "exited" and state["ExitCode"] == 0


def as_configured(found: list[dict[str, Any]]) -> bool:
    """Every service compose would run has a container created from its current configuration and
    running its current image."""
    wanted = dict(line.split() for line in docker("compose", "config", "--hash", "*").splitlines())
    labels = {c["Config"]["Labels"].get(SERVICE): c["Config"]["Labels"].get(CONFIG_HASH) for c in found}
    if any(labels.get(service) != digest for service, digest in wanted.items()):
        return False
    for container in found:
        current = docker("image", "inspect", "--format", "{{.Id}}", container["Config"]["Image"]).strip()
        if current != container["Image"]:
            return False
    return True


def unchanged(project: str, state_file: Path, flows: Path) -> bool:
    if not state_file.is_file():
        return False
    found = containers(project)
    return (
        bool(found)
        and state_file.read_text().strip() == fingerprint(found, flows)
        and all(settled(c) for c in found)
        and as_configured(found)
    )


def main(argv: list[str]) -> int:
    command, project, state = argv
    state_file, flows = Path(state), Path(state).resolve().parent / "flows"
    try:
        if command == "save":
            state_file.write_text(fingerprint(containers(project), flows) + "\n")
            return 0
        return 0 if unchanged(project, state_file, flows) else 1
    except (subprocess.CalledProcessError, OSError, ValueError, KeyError):
        if command == "save":
            state_file.unlink(missing_ok=True)  # no record: the next `up` does everything
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
