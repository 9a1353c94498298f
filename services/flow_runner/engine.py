"""Command of every flow-run container: Prefect's engine (`python -m prefect.engine`), plus two things.

1. The flow is loaded from the read-only code (the deployment's pull step enters FLOWS_DIR), then
   the run continues in SCRATCH_DIR, an empty writable directory that goes with the container: a
   flow that writes relative paths (files, caches, dbt's target/) behaves as on a laptop.
2. A flow whose code cannot be imported ends Failed with the file and line of the error in its
   state message (and so in the alert), instead of a bare crash of the container.
The run is otherwise exactly what prefect.engine's __main__ does, in this one process (starting
the engine in a subprocess, as `prefect flow-run execute` does, doubles trigger-to-Running time).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn
from uuid import UUID

if not __package__:  # run as a file by the work pool's command: make the platform's code importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.contract import SCRATCH_DIR
from services.flow_code import describe


def fail_unloadable_run(flow_run_id: UUID, exc: BaseException, code_dir: Path) -> str:
    from prefect.client.orchestration import get_client
    from prefect.states import Failed
    from prefect.utilities.engine import propose_state_sync

    message = f"The flow's code could not be imported: {describe(exc, code_dir)}"
    with get_client(sync_client=True) as client:
        propose_state_sync(client, Failed(message=message), flow_run_id=flow_run_id)
    return message


def main(argv: list[str]) -> None:
    flow_run_id = UUID(argv[0] if argv else os.environ["PREFECT__FLOW_RUN_ID"])
    from prefect.engine import _drive_run_flow_result, configure_from_env, handle_engine_signals

    configure_from_env()
    with handle_engine_signals(flow_run_id):
        from prefect._internal.metrics import RunMetrics
        from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow

        flow_run = load_flow_run(flow_run_id=flow_run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        try:
            flow = load_flow(flow_run)
        except Exception as exc:
            # The pull steps ran: the working directory is the code's.
            run_logger.error(fail_unloadable_run(flow_run_id, exc, Path.cwd()), exc_info=True)
            sys.exit(1)
        os.chdir(os.environ.get("PLATFORM_SCRATCH_DIR", SCRATCH_DIR))
        with RunMetrics(flow_run, flow):
            _drive_run_flow_result(flow, run_flow(flow, flow_run=flow_run, error_logger=run_logger))
    leave_now()


def leave_now() -> NoReturn:
    """The run ended and reported its state (a run that failed left through SystemExit above, as
    Prefect's engine does): send the log lines and events Prefect still queues, do what Python's
    exit does for the flow's own code (its atexit handlers, then wait for its non-daemon threads),
    and exit without tearing the interpreter down. That teardown (dbt, DuckDB, Arrow, Prefect's
    threads) took about a second after Completed, while the container, and the worker's slot for
    it, stayed taken."""
    import atexit
    import logging
    import threading

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all()
    APILogWorker.drain_all()
    atexit._run_exitfuncs()  # the flow's libraries flush here (telemetry, trackers); Prefect's stop
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
