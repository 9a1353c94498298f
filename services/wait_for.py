"""python -m services.wait_for TARGET [--timeout S] [-- COMMAND...]: waits until TARGET answers,
then runs COMMAND in its place (exec). TARGET is ``host:port`` (a TCP connect) or an http(s) URL
(any answer below 500).

Compose starts one-shots after their dependencies are healthy on `up`, but `docker compose restart`
restarts every container at once: the migrations and the init would then find Postgres or the
server not yet up and sit Exited non-zero. Waiting a bounded time (it says how long, and fails
naming what did not answer) makes a restart as clean as an `up`. Standard library only: it runs on
both images before anything else.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

RETRY_SECONDS = 2.0


def answers(target: str, timeout: float = 3.0) -> bool:
    if target.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 - our own URL
                return response.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    target: str, timeout: float, log: Callable[[str], None] = print, interval: float = RETRY_SECONDS
) -> bool:
    """True once ``target`` answers; False after ``timeout`` seconds. Says so while it waits."""
    deadline = time.monotonic() + timeout
    said = False
    while not answers(target):
        if time.monotonic() >= deadline:
            return False
        if not said:
            log(f"{target} does not answer yet; waiting up to {timeout:.0f} s")
            said = True
        time.sleep(interval)
    if said:
        log(f"{target} answers")
    return True


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[args.index("--") + 1 :] if "--" in args else []
    own = args[: args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(prog="python -m services.wait_for", description=__doc__)
    parser.add_argument("target")
    parser.add_argument("--timeout", type=float, default=180)
    options = parser.parse_args(own)
    if not wait_for(options.target, options.timeout, log=lambda m: print(f"wait_for: {m}", flush=True)):
        sys.exit(f"wait_for: {options.target} did not answer within {options.timeout:.0f} s")
    if command:
        os.execvp(command[0], command)  # noqa: S606 - the command is docker-compose.yml's


if __name__ == "__main__":
    main()
