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
Message = str | Callable[[], str]


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


def wait_until(
    holds: Callable[[], bool],
    timeout: float,
    waiting: Message,
    log: Callable[[str], None] = print,
    interval: float = RETRY_SECONDS,
    done: Message | None = None,
) -> bool:
    """True once ``holds()`` does; False once ``timeout`` seconds have passed without it.

    Says ``waiting`` once, when the first check fails, and ``done`` when it then holds: one line each
    in a one-shot's log, however long the wait (a callable is asked for its words then, so they can
    name what the check saw). Every wait of the stack's one-shots and of the server's start is this
    loop with its own check.
    """
    deadline = time.monotonic() + timeout
    said = False
    while not holds():
        if time.monotonic() >= deadline:
            return False
        if not said:
            log(waiting if isinstance(waiting, str) else waiting())
            said = True
        time.sleep(interval)
    if said and done:
        log(done if isinstance(done, str) else done())
    return True


def wait_for(
    target: str, timeout: float, log: Callable[[str], None] = print, interval: float = RETRY_SECONDS
) -> bool:
    """True once ``target`` answers; False after ``timeout`` seconds. Says so while it waits."""
    return wait_until(
        lambda: answers(target),
        timeout,
        f"{target} does not answer yet; waiting up to {timeout:.0f} s",
        log,
        interval,
        done=f"{target} answers",
    )


def wait_for_api(api_url: str, timeout: float, who: str, interval: float = 0.5) -> None:
    """Until the Prefect API at ``api_url`` answers its health check; exits naming it, and ``who``
    waited, after ``timeout`` seconds (prefect-init and prefect-deploy start beside the server)."""
    health = f"{api_url.rstrip('/')}/health"
    say: Callable[[str], None] = lambda message: print(f"{who}: {message}", flush=True)  # noqa: E731
    if not wait_for(health, timeout, log=say, interval=interval):
        sys.exit(f"{who}: the Prefect API at {api_url} did not answer within {timeout:.0f} s")


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
