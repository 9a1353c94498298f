"""What a flow-run container may be, checked by the worker before it creates one.

Anyone holding the API credential (every flow run does) can create runs with job variables, and
this worker runs as root with the Docker socket: a job that mounts the host's `/`, runs privileged
or as root is a takeover of the host. Two locks stop that:
1. the pool's template (services/work_pools/docker.json) exposes only name, env, labels and
   mem_limit, so the API refuses any other job variable when the run is created;
2. this policy, derived from the same settings as the template, checks the job variables the run
   asks for and the container settings the worker built from them (a template edited in the UI
   is caught here too), and fixes what the platform decides: uid, capabilities, swap, pids.
A refused job fails the run with a message naming the variable; no container is created.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services import contract
from services.work_pools import template_values

ALLOWED_JOB_VARIABLES = frozenset({"name", "env", "labels", "mem_limit"})
# Container settings the worker builds from the pool's fixed configuration; anything else
# (cap_add, devices, user, pid_mode, security_opt, mounts, ...) can only come from a tampered
# template's container_create_kwargs, and is refused.
BUILT_SETTINGS = frozenset(
    {
        "image", "network", "network_mode", "command", "environment", "auto_remove", "labels",
        "extra_hosts", "name", "volumes", "mem_limit", "memswap_limit", "privileged",
    }
)  # fmt: skip
PIDS_LIMIT = 512
# When the host runs out of memory, the kernel kills the process with the highest OOM score: at the
# maximum, a flow run goes before any service (they keep 0: docker-compose.yml), whatever its size.
OOM_SCORE_ADJ = 1000
MEMORY = re.compile(r"^(\d+)([bkmg]?)$", re.IGNORECASE)
UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class JobRefused(Exception):
    """A job variable or container setting the platform does not allow."""


def memory_bytes(value: str | int | None, what: str) -> int:
    if isinstance(value, int):
        return value
    match = MEMORY.match(str(value or "").strip())
    if not match:
        raise JobRefused(f"{what} {value!r} is not a Docker memory size (e.g. 512m, 1g)")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


@dataclass(frozen=True)
class JobPolicy:
    image: str
    network: str
    volumes: tuple[str, ...]
    max_memory: int
    uid: int = contract.FLOW_UID

    @classmethod
    def from_settings(cls, setting: Callable[[str], str], memory_max: str = "") -> JobPolicy:
        """The policy of this stack: the values the pool's template was rendered with."""
        values = template_values(setting)
        return cls(
            image=values["FLOW_RUN_IMAGE"],
            network=values["PLATFORM_NETWORK"],
            volumes=(
                f"{values['PLATFORM_DIR']}/flows:{contract.FLOWS_DIR}:ro",
                f"{values['PLATFORM_DATA_VOLUME']}:{contract.DATA_DIR}",
            ),
            max_memory=memory_bytes(memory_max or values["FLOW_RUN_MEMORY_LIMIT"], "FLOW_RUN_MEMORY_MAX"),
        )

    def check_job_variables(self, variables: Mapping[str, Any]) -> None:
        """The job variables a deployment and a run ask for (both merged), before anything is built."""
        for name in sorted(variables):
            if name not in ALLOWED_JOB_VARIABLES:
                raise JobRefused(
                    f"job variable {name!r} is not allowed: a run may set only "
                    f"{', '.join(sorted(ALLOWED_JOB_VARIABLES))} (image, command, user, volumes, network "
                    "and privileges are the platform's)"
                )
        for key in sorted(variables.get("env") or {}):
            if contract.is_reserved_env(key):
                raise JobRefused(f"job variable 'env' may not set {key!r}: the platform sets it")
        if variables.get("mem_limit") is not None:
            self._check_memory(variables["mem_limit"])

    def check(self, settings: Mapping[str, Any]) -> None:
        """The container settings the worker built, before the container is created."""
        if extra := sorted(set(settings) - BUILT_SETTINGS):
            raise JobRefused(f"container setting {extra[0]!r} (container_create_kwargs) is not allowed")
        if settings.get("image") != self.image:
            raise JobRefused(f"image {settings.get('image')!r} is not allowed: flow runs use {self.image!r}")
        if settings.get("privileged"):
            raise JobRefused("privileged containers are not allowed")
        if settings.get("network_mode") not in (None, self.network):
            raise JobRefused(f"network_mode {settings.get('network_mode')!r} is not allowed")
        if settings.get("network") != self.network:
            raise JobRefused(
                f"network {settings.get('network')!r} is not allowed: flow runs join {self.network!r}"
            )
        for volume in settings.get("volumes") or []:
            if volume not in self.volumes:
                raise JobRefused(
                    f"volume {volume!r} is not allowed: flow runs mount only the code (read-only) and "
                    "the data volume"
                )
        self._check_memory(settings.get("mem_limit"))
        for key in sorted(settings.get("environment") or {}):
            if key.startswith("LD_"):
                raise JobRefused(f"environment variable {key!r} is not allowed")

    def _check_memory(self, value: Any) -> None:
        if memory_bytes(value, "mem_limit") > self.max_memory:
            raise JobRefused(
                f"mem_limit {value!r} is above the maximum {self.max_memory // 1024**2}m "
                "(FLOW_RUN_MEMORY_MAX in .env)"
            )

    def harden(self, settings: dict[str, Any], defaults: Mapping[str, str]) -> dict[str, Any]:
        """The settings with what the platform fixes: the flow user, no capabilities, no privilege
        gain, no swap beyond the memory limit, a pids limit, the first place in the host's OOM
        killer's queue; ``defaults`` (the platform's settings) under the job's environment, which
        may override them except for reserved names."""
        mem_limit = memory_bytes(settings.get("mem_limit"), "mem_limit")
        return {
            **settings,
            "environment": {**defaults, **(settings.get("environment") or {})},
            "user": f"{self.uid}:{self.uid}",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": PIDS_LIMIT,
            "oom_score_adj": OOM_SCORE_ADJ,
            "mem_limit": mem_limit,
            "memswap_limit": mem_limit,
            "working_dir": contract.SCRATCH_DIR,
        }
