"""Shared fixtures: a Docker engine for the tests that need one, and one real Prefect API server.

Without an engine those tests skip, unless REQUIRE_DOCKER=1 (set by .ci/run): then they fail,
so CI can never go green without having run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.report import REPORT_DIR_ENV, collected


def docker_engine_problem() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if probe.returncode != 0:
        return f"no Docker engine answers: {probe.stderr.decode(errors='replace').strip()[:200]}"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "Docker Compose v2 is missing"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = docker_engine_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but {problem} (run ../shared/container-host/up)")
    pytest.skip(f"{problem}; set REQUIRE_DOCKER=1 to make this a failure")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One real Prefect API server (SQLite) for the whole session; results stored in a temp dir."""
    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage, PREFECT_SERVER_ANALYTICS_ENABLED: False}),
        prefect_test_harness(server_startup_timeout=300),
    ):
        yield


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Records failures on the module so module-scoped fixtures can dump diagnostics."""
    report = yield
    if report.failed:
        item.module.__dict__["_any_test_failed"] = True  # type: ignore[union-attr]
    return report


# Test files that take minutes (each starts a stack, a cluster or terraform), longest first. With
# `--dist loadfile --no-loadscope-reorder` (scripts/test) xdist hands whole files to its workers in
# collection order, so these start first and the quick files fill the gaps; otherwise xdist would
# order files by their number of tests and start a long file with few tests last. The figures
# come from the "time per test file" list printed at the end of every run.
LONGEST_FIRST = (
    "tests/e2e/test_operations.py",
    "tests/e2e/test_faults.py",
    "tests/e2e/test_stack.py",
    "tests/e2e/test_jobs.py",
    "tests/e2e/test_your_code.py",
    "tests/e2e/test_worker_only.py",
    "tests/terraform/test_apply.py",
    "tests/e2e/test_proxy.py",
    "tests/e2e/test_security.py",
    "tests/e2e/test_proxy_acme.py",
    "tests/flows/test_elt_failures.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [path for path in LONGEST_FIRST if not (config.rootpath / path).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names files that do not exist: {missing}")
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable


def pytest_configure(config: pytest.Config) -> None:
    """The controlling process (not an xdist worker) makes the folder announced text goes to."""
    if not hasattr(config, "workerinput"):
        os.environ[REPORT_DIR_ENV] = tempfile.mkdtemp(prefix="platform-test-report-")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Each test file's time (to keep LONGEST_FIRST in order), then the figures and diagnostics
    the modules announced (tests/support/report.py)."""
    if hasattr(config, "workerinput") or not os.environ.get(REPORT_DIR_ENV):
        return
    per_file: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                path = report.nodeid.split("::", 1)[0]
                per_file[path] = per_file.get(path, 0.0) + report.duration
    slowest = sorted(per_file.items(), key=lambda kv: -kv[1])[:20]
    if slowest:
        terminalreporter.section("time per test file (setup + calls + teardown), slowest 20")
        for path, seconds in slowest:
            terminalreporter.write_line(f"{seconds:8.1f}s  {path}")
    directory = Path(os.environ[REPORT_DIR_ENV])
    text = collected(directory) if directory.is_dir() else ""
    if text:
        terminalreporter.section("figures and diagnostics announced by the tests")
        terminalreporter.write(text)
    shutil.rmtree(directory, ignore_errors=True)
