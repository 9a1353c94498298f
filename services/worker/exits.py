"""How a flow-run container ended, told in words: out of memory, killed, stopped, or gone unseen.

Flow-run containers are removed as soon as they exit (auto_remove), so their State.ExitCode and
State.OOMKilled are often gone by the time anyone asks. The engine's event log keeps them: every
container's `die` event carries its exit code and an `oom` event precedes the death of a container
the kernel killed for memory. The engine keeps the last events in memory (a few hundred), so this
also answers for a container that exited while the worker was down, unless the engine restarted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FLOW_RUN_ID_LABEL = "io.prefect.flow-run-id"  # set by prefect-docker on every flow-run container


@dataclass(frozen=True)
class ContainerExit:
    """A container that is no longer running. ``code`` None: it is gone and no exit was recorded."""

    code: int | None
    oom: bool = False
    at: float | None = None  # unix time of its death

    def explain(self, memory_limit: str) -> str:
        """Why the run's container ended, for the run's state message (and so the alert)."""
        if self.oom:
            return (
                f"Its container was killed for exceeding its memory limit ({memory_limit}): give the "
                "deployment more with the job variable mem_limit (at most FLOW_RUN_MEMORY_MAX) or "
                "make the run use less."
            )
        if self.code is None:
            return (
                "Its container no longer exists and no exit was recorded: the stack or the host "
                "restarted while it ran."
            )
        if self.code == 137:
            return (
                "Its container was killed by a signal (SIGKILL: docker kill or rm -f, or the host), "
                "not for exceeding its memory limit."
            )
        if self.code == 143:
            return "Its container was stopped by SIGTERM (docker stop, or the host shutting down)."
        return f"Its container exited with code {self.code}."


def memory_limit_text(mem_limit: str | None) -> str:
    """The memory limit a run had, named by the setting it came from."""
    default = os.environ.get("FLOW_RUN_MEMORY_LIMIT", "")
    if mem_limit and str(mem_limit) != default:
        return f"mem_limit={mem_limit}, the deployment's or run's job variable"
    return f"FLOW_RUN_MEMORY_LIMIT={default or 'unset'}"


def _finished_at(value: str) -> float | None:
    try:  # Docker writes nanoseconds; Python parses microseconds
        return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return None


def container_exit(docker_client: Any, container_id: str, since: float) -> ContainerExit | None:
    """How container ``container_id`` ended; None while it still runs.

    ``since``: unix time before the container started (how far back to read the event log)."""
    import docker.errors

    try:
        state = docker_client.api.inspect_container(container_id)["State"]
    except docker.errors.NotFound:
        pass
    else:
        if state.get("Running") or state.get("Restarting"):
            return None
        if state.get("Status") != "created":
            return ContainerExit(
                code=int(state.get("ExitCode", -1)),
                oom=bool(state.get("OOMKilled")),
                at=_finished_at(state.get("FinishedAt") or ""),
            )
    return exit_from_events(docker_client, {"container": container_id}, since).get(container_id) or (
        ContainerExit(code=None)
    )


def exit_from_events(
    docker_client: Any, filters: dict[str, Any], since: float, by_label: str | None = None
) -> dict[str, ContainerExit]:
    """Exits of the containers matching ``filters`` since ``since``, from the engine's event log
    (it holds the events of containers already removed); keyed by container id, or by the value of
    the container's label ``by_label`` (events carry the container's labels)."""
    oom: set[str] = set()
    exits: dict[str, ContainerExit] = {}
    events = docker_client.api.events(
        since=max(0, int(since) - 1),
        until=int(time.time()) + 1,
        filters={**filters, "type": "container", "event": ["die", "oom"]},
        decode=True,
    )
    for event in events:
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        key = attributes.get(by_label, "") if by_label else event.get("id") or actor.get("ID", "")
        action = event.get("Action") or event.get("status")
        if action == "oom":
            oom.add(key)
        elif action == "die":
            code = attributes.get("exitCode")
            exits[key] = ContainerExit(
                code=int(code) if code is not None else None,
                oom=key in oom,
                at=event.get("timeNano", 0) / 1e9 or event.get("time"),
            )
    return exits
