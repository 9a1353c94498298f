"""python -m services.ops COMMAND: see services/ops/__init__.py. Exit 0 on success, 1 with a
message on stderr otherwise, 3 from schema-check when the revision is unknown."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from services.contract import DATA_DIR
from services.ops import log


def _data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR") or DATA_DIR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ops")
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("data-snapshot", help="tar stream of the data volume on stdout")
    snap.add_argument("--lock-timeout", type=float, default=3600, help="seconds to wait for the lock")
    snap.add_argument("--no-lock", action="store_true", help="server and worker are stopped")
    snap.add_argument("--hold", action="store_true", help="keep the lock until stdin ends")
    for name in ("data-stage", "data-swap", "data-unswap", "data-finish"):
        sub.add_parser(name).add_argument("restore_id")
    settle = sub.add_parser("settle-runs", help="crash runs left unfinished, free held slots")
    settle.add_argument("--reason", required=True)
    check = sub.add_parser("schema-check", help="is a database revision known to this Prefect?")
    check.add_argument("revision")
    self_check = sub.add_parser("run-deployment", help="run a deployment, wait, exit 0 if Completed")
    self_check.add_argument("name")
    self_check.add_argument("--timeout", type=float, default=600)
    sub.add_parser("probe", help="status facts as JSON on stdout")
    args = parser.parse_args(argv)

    from services.ops.data_volume import DataVolumeError

    data_dir = _data_dir()
    try:
        if args.command == "data-snapshot":
            from services.ops.data_volume import snapshot

            lock_timeout = None if args.no_lock else args.lock_timeout
            snapshot(sys.stdout.buffer, data_dir, lock_timeout, sys.stdin.buffer if args.hold else None)
        elif args.command == "data-stage":
            from services.ops.data_volume import stage

            stage(sys.stdin.buffer, data_dir, args.restore_id)
        elif args.command in ("data-swap", "data-unswap", "data-finish"):
            from services.ops import data_volume

            getattr(data_volume, args.command.removeprefix("data-"))(data_dir, args.restore_id)
        elif args.command == "settle-runs":
            from prefect import get_client

            from services.ops.runs import settle

            with get_client(sync_client=True) as client:
                print(json.dumps(settle(client, args.reason)))
        elif args.command == "schema-check":
            from services.ops.schema import compare, postgres_revisions

            known = postgres_revisions()
            verdict = compare(args.revision, known)
            print(
                json.dumps(
                    {"revision": args.revision, "head": known[0] if known else None, "verdict": verdict}
                )
            )
            return 3 if verdict == "unknown" else 0
        elif args.command == "run-deployment":
            from services.ops.runs import run_deployment_and_wait

            state, message = run_deployment_and_wait(args.name, args.timeout)
            print(json.dumps({"deployment": args.name, "state": state, "message": message}))
            return 0 if state == "COMPLETED" else 1
        elif args.command == "probe":
            from services.ops.probe import collect

            pool = os.environ.get("PREFECT_WORK_POOL_NAME") or "docker-pool"
            print(json.dumps(collect(data_dir, pool)))
    except (DataVolumeError, TimeoutError) as exc:
        log(f"{args.command} failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
