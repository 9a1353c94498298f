"""The warehouse switch: ``WAREHOUSE=duckdb|snowflake`` picks both the dlt destination and the dbt target.

One module per warehouse (flows/warehouses/<kind>.py) implements ``Warehouse``; ``resolve_warehouse``
reads WAREHOUSE and builds the chosen one from its settings, once per run. Everything that depends
on the choice (dlt's destination, the dbt profile's variables, a DB-API connection for small
queries) comes from that one value. Settings are checked up front, so a misconfigured run fails
before it loads anything. A new warehouse is one new module with a ``Warehouse`` subclass.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from flows.credentials import CredentialResolver
from flows.errors import WarehouseConfigError

__all__ = ["Warehouse", "WarehouseConfigError", "resolve_warehouse", "warehouse_kinds"]


class Warehouse(ABC):
    """One warehouse's settings, resolved for a run. Subclasses are frozen dataclasses."""

    kind: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, env: Mapping[str, str], resolver: CredentialResolver) -> Warehouse:
        """Reads and checks this warehouse's settings; raises naming every missing or invalid one."""

    @abstractmethod
    def describe(self) -> str:
        """A log-safe one-line description (no secrets)."""

    @abstractmethod
    def dlt_destination(self) -> Any:
        """The dlt destination object for this warehouse."""

    @abstractmethod
    def connect(self) -> Any:
        """A DB-API connection for small queries (row counts); the caller closes it."""

    @abstractmethod
    def dbt_env(self) -> dict[str, str]:
        """Environment variables the platform's dbt profile reads for this warehouse."""

    def release(self) -> None:  # noqa: B027 - optional hook, most warehouses hold nothing
        """Frees what the dbt adapter keeps open in this process after a build (DuckDB's file lock)."""

    @property
    def dbt_target(self) -> str:
        return self.kind


def _registry() -> dict[str, type[Warehouse]]:
    """kind -> Warehouse subclass, from the modules of this package (their imports are light)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name != "lock":
            importlib.import_module(f"{__name__}.{module.name}")
    return {cls.kind: cls for cls in Warehouse.__subclasses__()}


def warehouse_kinds() -> tuple[str, ...]:
    return tuple(sorted(_registry()))


def resolve_warehouse(
    resolver: CredentialResolver | None = None, environ: Mapping[str, str] | None = None
) -> Warehouse:
    """Reads WAREHOUSE (default duckdb) and the settings of the chosen warehouse."""
    env = os.environ if environ is None else environ
    kind = (env.get("WAREHOUSE") or "duckdb").strip().lower()
    registry = _registry()
    if kind not in registry:
        choices = " or ".join(repr(k) for k in sorted(registry))
        raise WarehouseConfigError(f"WAREHOUSE must be {choices}, got {kind!r}.")
    return registry[kind].from_settings(env, resolver or CredentialResolver(env))
