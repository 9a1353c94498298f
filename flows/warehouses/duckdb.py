"""DuckDB: one file on the data volume (the default warehouse; no account needed)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from flows.credentials import CredentialResolver
from flows.errors import WarehouseConfigError
from flows.warehouses import Warehouse

DEFAULT_PATH = "warehouse.duckdb"  # under DATA_DIR
# DuckDB's own default is 80% of RAM; flow-run containers have a 1 GiB limit that Python, Arrow and
# dbt share, so DuckDB is capped lower and spills to disk (next to the database file) beyond it.
DEFAULT_MEMORY_LIMIT = "384MB"
MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$", re.IGNORECASE)


@dataclass(frozen=True)
class DuckDbWarehouse(Warehouse):
    kind: ClassVar[str] = "duckdb"
    path: Path
    memory_limit: str = DEFAULT_MEMORY_LIMIT

    @classmethod
    def from_settings(cls, env: Mapping[str, str], resolver: CredentialResolver) -> DuckDbWarehouse:
        data_dir = Path(env.get("DATA_DIR") or "data")
        path = Path(env.get("DUCKDB_PATH") or data_dir / DEFAULT_PATH).expanduser().resolve()
        limit = (env.get("DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT).strip()
        if not MEMORY_SIZE.match(limit):
            raise WarehouseConfigError(
                f"DUCKDB_MEMORY_LIMIT must be a size like 384MB or 1GB, got {limit!r}."
            )
        return cls(path=path, memory_limit=limit)

    def describe(self) -> str:
        return f"duckdb at {self.path}"

    def dlt_destination(self) -> Any:
        import dlt
        from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

        self.path.parent.mkdir(parents=True, exist_ok=True)
        credentials = DuckDbCredentials(str(self.path), global_config={"memory_limit": self.memory_limit})
        return dlt.destinations.duckdb(credentials=credentials)

    def connect(self) -> Any:
        import duckdb

        connection = duckdb.connect(str(self.path))
        connection.execute(f"SET memory_limit = '{self.memory_limit}'")
        return connection

    def dbt_env(self) -> dict[str, str]:
        return {"DUCKDB_PATH": str(self.path), "DUCKDB_MEMORY_LIMIT": self.memory_limit}

    def release(self) -> None:
        """Closes the DuckDB database dbt-duckdb keeps open for the life of the process.

        Otherwise the file stays locked by this process after the build (and DuckDB 2.0 reports the
        still-open objects as leaks at exit). dbt-duckdb itself closes it this way when its settings
        change.
        """
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        environment = getattr(DuckDBConnectionManager, "_ENV", None)
        if environment is not None:
            environment.close()
            DuckDBConnectionManager._ENV = None
