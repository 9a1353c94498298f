"""Which of a project's services to start again, and starting them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.watchdog.docker_api import DockerApi, DockerError

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# Exit codes of a stop the operator asked for: a clean exit on SIGTERM (docker stop, compose stop).
STOPPED_ON_PURPOSE = {0, 143}
# After a failed start, wait before trying that container again (doubling up to the maximum).
BACKOFF_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 120.0


@dataclass
class Reviver:
    """Starts ``services`` of compose project ``project`` found killed; remembers failed starts."""

    api: DockerApi
    project: str
    services: frozenset[str]
    log: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    _next_try: dict[str, tuple[float, float]] = field(default_factory=dict)

    def killed(self) -> list[dict]:
        """Containers of the watched services that are down and were not stopped on purpose."""
        found = []
        for container in self.api.containers([f"{PROJECT_LABEL}={self.project}"]):
            labels = container.get("Labels") or {}
            if labels.get(SERVICE_LABEL) not in self.services or labels.get(ONEOFF_LABEL) == "True":
                continue
            if container.get("State") not in ("exited", "dead"):
                continue
            state = self.api.inspect(container["Id"])["State"]
            if state.get("Restarting") or state.get("ExitCode") in STOPPED_ON_PURPOSE:
                continue
            container.update(ExitCode=state.get("ExitCode"), OOMKilled=state.get("OOMKilled"))
            found.append(container)
        return found

    def revive(self) -> list[str]:
        """One pass: starts every killed service container; returns the services started."""
        started = []
        for container in self.killed():
            service = container["Labels"][SERVICE_LABEL]
            not_before, delay = self._next_try.get(container["Id"], (0.0, BACKOFF_SECONDS))
            if self.clock() < not_before:
                continue
            how = "out of memory" if container["OOMKilled"] else f"exit code {container['ExitCode']}"
            try:
                self.api.start(container["Id"])
            except DockerError as exc:
                self._next_try[container["Id"]] = (self.clock() + delay, min(delay * 2, BACKOFF_MAX_SECONDS))
                self.log(f"{service} is down ({how}) and did not start: {exc}; retrying in {delay:.0f} s")
                continue
            self._next_try.pop(container["Id"], None)
            self.log(f"{service} was down ({how}, not stopped by an operator): started it again")
            started.append(service)
        return started


def services_from(value: str, default: Iterable[str]) -> frozenset[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    return frozenset(names or default)
