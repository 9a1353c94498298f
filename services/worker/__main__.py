"""python -m services.worker --pool NAME --name NAME --limit N: the stack's Docker worker."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

import anyio

from services.work_pools import TemplateError
from services.worker.docker_worker import PlatformDockerWorker
from services.worker.job_policy import JobPolicy, JobRefused


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, required=True)
    return parser.parse_args(argv)


def setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"prefect-worker: {name} is not set; it comes from .env (see .env.example)")
    return value


def policy_from_env() -> JobPolicy:
    try:
        return JobPolicy.from_settings(setting, os.environ.get("FLOW_RUN_MEMORY_MAX", ""))
    except (TemplateError, JobRefused) as exc:
        sys.exit(f"prefect-worker: {exc}")


async def run(args: argparse.Namespace, policy: JobPolicy) -> None:
    worker = PlatformDockerWorker(
        work_pool_name=args.pool, name=args.name, limit=args.limit, create_pool_if_not_found=False
    )
    worker.policy = policy
    await worker.start(with_healthcheck=True)


def main() -> None:
    args = parse_args()
    policy = policy_from_env()

    # `docker stop` sends SIGTERM: shut down like Ctrl-C instead of dying mid-request.
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run, args, policy)
    print(f"Worker {args.name!r} stopped")


if __name__ == "__main__":
    main()
