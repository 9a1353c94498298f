"""Text for the end of the test session's output: figures and diagnostics of the e2e modules.

Under pytest-xdist (./scripts/test runs with it) whatever a worker prints outside a test's report,
with capture disabled or not, never reaches the terminal. ``announce`` appends to a file in a
folder the controlling process made (PLATFORM_TEST_REPORT_DIR, set in tests/conftest.py before the
workers start, inherited by them), and the controller prints every file in its terminal summary.
"""

from __future__ import annotations

import os
from pathlib import Path

REPORT_DIR_ENV = "PLATFORM_TEST_REPORT_DIR"


def announce(text: str) -> None:
    """Shows ``text`` at the end of the session's output (printed at once when not under pytest)."""
    directory = os.environ.get(REPORT_DIR_ENV)
    if not directory or not Path(directory).is_dir():
        print(text, flush=True)
        return
    with (Path(directory) / f"{os.getpid()}.txt").open("a") as out:
        out.write(text.rstrip("\n") + "\n")


def collected(directory: Path) -> str:
    """Everything announced into ``directory``, one process's text after another."""
    return "".join(path.read_text() for path in sorted(directory.glob("*.txt")))
