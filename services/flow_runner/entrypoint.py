"""Entrypoint of flow-run containers: load the platform's settings, then run as the flow user.

The worker mounts the host's .env read-only at the contract's SETTINGS_FILE. Reading it here, at
each container start, keeps secrets out of the image and out of the work pool's job template
(which the Prefect UI shows), and makes an edited or rotated value reach the next run without a
restart. Variables already set on the container (by the job template) win over the file.
Standard library only, so it costs a few milliseconds.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

if not __package__:  # run as a file by the image's ENTRYPOINT: make the platform's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.lib.envfile import parse
from services.contract import FLOW_UID, NOT_FOR_FLOWS, SETTINGS_FILE


def load_settings(path: Path) -> None:
    if not path.is_file():
        return
    for key, value in parse(path.read_text()).items():
        if value and key not in NOT_FOR_FLOWS and key not in os.environ:
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
    load_settings(Path(os.environ.get("PLATFORM_SETTINGS_FILE", SETTINGS_FILE)))
    drop_privileges(int(os.environ.get("RUN_AS_UID", str(FLOW_UID))))
    os.execvp(argv[0], argv)  # noqa: S606 - replacing this process with the command is the point


if __name__ == "__main__":
    main(sys.argv[1:])
