"""scripts/up sizes the flow runs to the host's memory, and refuses a .env that over-commits it.

The real scripts/up on a copy of the checkout, with a `docker` on PATH that answers as an engine on
a host of the given memory and cores would (and records every call): what matters is what `up`
writes to .env and whether it gets as far as starting anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.stack import env_value

FAKE_DOCKER = """#!/bin/sh
echo "$*" >>"$FAKE_DOCKER_LOG"
case "$*" in
  "info --format {{.MemTotal}} {{.NCPU}}") [ -z "$FAKE_MEMTOTAL" ] || echo "$FAKE_MEMTOTAL $FAKE_NCPU" ;;
  "volume inspect"*) exit 1 ;;
esac
"""
GIB = 1024**3
T3_SMALL = 2_004_000_000  # what a 2 GiB t3.small's kernel reports (MemTotal)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(REPO / "scripts", root / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    for name in (".env.example", "docker-compose.yml"):
        shutil.copy2(REPO / name, root / name)
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    return root


def up(root: Path, memory: int | None, cores: int = 2) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WORKER_", "FLOW_RUN_", "PREFECT_", "COMPOSE_", "POSTGRES_"))
    }
    env.update(
        PATH=f"{root.parent / 'bin'}:{env['PATH']}",
        FAKE_DOCKER_LOG=str(root.parent / "docker.log"),
        FAKE_MEMTOTAL="" if memory is None else str(memory),
        FAKE_NCPU=str(cores),
        PREFECT_HOST_PORT="1",  # nothing answers there: no running server to compare passwords with
    )
    return subprocess.run(["./scripts/up"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def started_anything(root: Path) -> bool:
    calls = (root.parent / "docker.log").read_text()
    return "compose build" in calls or "compose up" in calls


@pytest.mark.parametrize(
    ("memory", "cores", "concurrency", "limit"),
    [
        (T3_SMALL, 2, "2", "512m"),  # two runs at once still fit a t3.small
        (4 * GIB, 2, "2", "1g"),
        (8 * GIB, 2, "2", "1g"),  # one run per core: more would only share the cores
        (16 * GIB, 8, "4", "1g"),
        (int(1.5 * GIB), 2, "1", "704m"),
    ],
)
def test_a_new_env_is_sized_to_the_host(
    checkout: Path, memory: int, cores: int, concurrency: str, limit: str
) -> None:
    result = up(checkout, memory, cores)
    assert result.returncode == 0, result.stderr
    env = checkout / ".env"
    assert (env_value(env, "WORKER_CONCURRENCY"), env_value(env, "FLOW_RUN_MEMORY_LIMIT")) == (
        concurrency,
        limit,
    )
    assert f"WORKER_CONCURRENCY={concurrency} FLOW_RUN_MEMORY_LIMIT={limit}" in result.stdout
    assert started_anything(checkout)
    # A later `up` keeps what fits and says nothing about it.
    again = up(checkout, memory, cores)
    assert again.returncode == 0 and "sized to this host" not in again.stdout
    assert env_value(env, "FLOW_RUN_MEMORY_LIMIT") == limit


def test_an_over_committed_env_stops_up_before_anything_starts(checkout: Path) -> None:
    env = checkout / ".env"
    env.write_text("WORKER_CONCURRENCY=2\nFLOW_RUN_MEMORY_LIMIT=1g\n")
    result = up(checkout, T3_SMALL)
    assert result.returncode == 1
    message = result.stderr
    assert "WORKER_CONCURRENCY=2 x FLOW_RUN_MEMORY_LIMIT=1024 MiB is 2048 MiB" in message, message
    assert "this host has 1911 MiB" in message and "FLOW_RUN_MEMORY_LIMIT=512m" in message
    assert not started_anything(checkout)
    assert env_value(env, "FLOW_RUN_MEMORY_LIMIT") == "1g"  # never changed behind the user's back


def test_what_a_deployment_may_ask_for_counts_too(checkout: Path) -> None:
    (checkout / ".env").write_text(
        "WORKER_CONCURRENCY=2\nFLOW_RUN_MEMORY_LIMIT=512m\nFLOW_RUN_MEMORY_MAX=2g\n"
    )
    result = up(checkout, 4 * GIB)
    assert result.returncode == 1 and "FLOW_RUN_MEMORY_MAX=2048 MiB" in result.stderr
    assert not started_anything(checkout)


def test_a_host_too_small_is_refused_with_its_numbers(checkout: Path) -> None:
    result = up(checkout, 1 * GIB)
    assert result.returncode == 1
    assert "this host has 1024 MiB" in result.stderr and "at least 256 MiB" in result.stderr
    assert not started_anything(checkout)


def test_an_engine_that_does_not_say_leaves_compose_defaults(checkout: Path) -> None:
    result = up(checkout, None)
    assert result.returncode == 0, result.stderr
    assert env_value(checkout / ".env", "WORKER_CONCURRENCY") == ""
    assert started_anything(checkout)
