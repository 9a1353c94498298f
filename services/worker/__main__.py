"""python -m services.worker --pool NAME --name NAME --limit N: the stack's Docker worker."""

from __future__ import annotations

import argparse
import contextlib
import signal

import anyio

from services.worker.docker_worker import PlatformDockerWorker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, required=True)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    worker = PlatformDockerWorker(
        work_pool_name=args.pool, name=args.name, limit=args.limit, create_pool_if_not_found=False
    )
    await worker.start(with_healthcheck=True)


def main() -> None:
    args = parse_args()

    # `docker stop` sends SIGTERM: shut down like Ctrl-C instead of dying mid-request.
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run, args)
    print(f"Worker {args.name!r} stopped")


if __name__ == "__main__":
    main()
