#!/usr/bin/env python3
"""Entrypoint of flow-run containers: load the platform's settings, then run as the flow user.

The worker mounts the host's .env read-only at $PLATFORM_SETTINGS_FILE. Reading it here, at each
container start, keeps secrets out of the image and out of the work pool's job template (which the
Prefect UI shows), and makes an edited or rotated value reach the next run without a restart.
Variables already set on the container (by the job template) win over the file.
Standard library only, so it costs a few milliseconds.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

SETTINGS_FILE = os.environ.get("PLATFORM_SETTINGS_FILE", "/run/secrets/platform.env")
# Flows never need the Prefect database's password; the API auth string comes from the worker.
NOT_FOR_FLOWS = frozenset({"POSTGRES_PASSWORD"})


def parse_env_file(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key.isidentifier() and value:
            values[key] = value
    return values


def load_settings(path: Path) -> None:
    if not path.is_file():
        return
    for key, value in parse_env_file(path.read_text()).items():
        if key not in NOT_FOR_FLOWS and key not in os.environ:
            os.environ[key] = value


def drop_privileges(uid: int) -> None:
    if os.getuid() != 0:
        return
    user = pwd.getpwuid(uid)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(uid)
    os.environ["HOME"] = user.pw_dir
    os.environ["USER"] = user.pw_name


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("flow-entrypoint: no command given")
    load_settings(Path(SETTINGS_FILE))
    drop_privileges(int(os.environ.get("RUN_AS_UID", "1000")))
    os.execvp(argv[0], argv)  # noqa: S606 - replacing this process with the command is the point


if __name__ == "__main__":
    main(sys.argv[1:])
