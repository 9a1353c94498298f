"""Platform self-check: proves the run loop end to end with the smallest possible flow.

It exercises what every real flow relies on: a task retry, a result persisted to the shared
results volume (so it outlives the flow-run container), a log line and an artifact.
Top-level imports stay light (prefect and stdlib only) because import time is start-up latency.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

# Read by the end-to-end test after it edits this file in a stack's mounted flows folder.
CODE_MARKER = "v1"


@task(retries=2, retry_delay_seconds=0)
def flaky_step(fail_times: int) -> int:
    """Fails on its first ``fail_times`` attempts, so a retry is exercised on every run."""
    attempt = get_run_context().task_run.run_count
    if attempt <= fail_times:
        raise RuntimeError(f"planned failure on attempt {attempt} of flaky_step")
    return attempt


@task(persist_result=True)
def persisted_answer(attempts: int) -> dict[str, object]:
    return {"attempts": attempts, "marker": CODE_MARKER, "hostname": socket.gethostname()}


@flow(name="platform-check", log_prints=True, persist_result=True)
def platform_check(fail_times: int = 1, hold_seconds: float = 0) -> dict[str, object]:
    """Runs a retried task, persists its result, logs and publishes an artifact.

    ``hold_seconds`` keeps the run busy at the end, to exercise cancellation and crashes.
    """
    if not 0 <= fail_times <= 2:
        raise ValueError(f"fail_times must be between 0 and 2 (the task retries twice), got {fail_times}")
    if not 0 <= hold_seconds <= 3600:
        raise ValueError(f"hold_seconds must be between 0 and 3600, got {hold_seconds}")
    logger = get_run_logger()
    attempts = flaky_step(fail_times)
    result = persisted_answer(attempts)
    result["code_dir"] = str(Path(__file__).resolve().parent)
    result["work_dir"] = os.getcwd()
    logger.info(
        "platform-check marker=%s host=%s uid=%s attempts=%s",
        CODE_MARKER,
        result["hostname"],
        os.getuid(),
        attempts,
    )
    create_markdown_artifact(
        key="platform-check",
        markdown=(
            "# Platform check\n\n"
            f"| marker | container | task attempts |\n|---|---|---|\n"
            f"| {CODE_MARKER} | {result['hostname']} | {attempts} |\n"
        ),
        description="Result of the platform self-check flow",
    )
    if hold_seconds:
        logger.info("holding for %s s", hold_seconds)
        time.sleep(hold_seconds)
    return result


if __name__ == "__main__":
    print(platform_check())
