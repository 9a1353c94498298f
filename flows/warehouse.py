"""The warehouse switch: ``WAREHOUSE=duckdb|snowflake`` picks both the dlt destination and the dbt target.

Everything that depends on the choice is derived here, once per run, from one ``Warehouse`` value:
the dlt destination object and the environment the dbt profile (flows/dbt/profiles.yml) reads.
Snowflake credentials are checked up front, so a misconfigured run fails before it loads anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flows.credentials import CredentialResolver, MissingCredentialsError

WarehouseKind = Literal["duckdb", "snowflake"]
DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
# DuckDB's own default is 80% of RAM; flow-run containers have a 1 GiB limit that Python, Arrow and
# dbt share, so DuckDB is capped lower and spills to disk (next to the database file) beyond it.
DEFAULT_DUCKDB_MEMORY_LIMIT = "384MB"
MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$", re.IGNORECASE)

SNOWFLAKE_REQUIRED = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE", "SNOWFLAKE_WAREHOUSE")
SNOWFLAKE_OPTIONAL = ("SNOWFLAKE_ROLE", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
# One of these authenticates: a password, or a key pair (PEM text or a path to the PEM file).
SNOWFLAKE_AUTH = ("SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY", "SNOWFLAKE_PRIVATE_KEY_PATH")


class WarehouseConfigError(ValueError):
    """The warehouse settings are invalid; the message says which setting and how to fix it."""


@dataclass(frozen=True)
class Warehouse:
    kind: WarehouseKind
    duckdb_path: Path | None = None
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    # Resolved Snowflake settings keyed by their environment variable names (secrets included:
    # never log this mapping; repr is suppressed for that reason).
    snowflake: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def dbt_target(self) -> str:
        return self.kind

    def describe(self) -> str:
        """A log-safe one-line description (no secrets)."""
        if self.kind == "duckdb":
            return f"duckdb at {self.duckdb_path}"
        return (
            f"snowflake account={self.snowflake['SNOWFLAKE_ACCOUNT']} "
            f"database={self.snowflake['SNOWFLAKE_DATABASE']} auth={self.snowflake_auth}"
        )

    @property
    def snowflake_auth(self) -> str:
        if "SNOWFLAKE_PRIVATE_KEY" in self.snowflake or "SNOWFLAKE_PRIVATE_KEY_PATH" in self.snowflake:
            return "key-pair"
        return "password"

    def dlt_destination(self) -> Any:
        """The dlt destination object for this warehouse."""
        import dlt

        if self.kind == "duckdb":
            assert self.duckdb_path is not None
            from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

            self.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            credentials = DuckDbCredentials(
                str(self.duckdb_path), global_config={"memory_limit": self.duckdb_memory_limit}
            )
            return dlt.destinations.duckdb(credentials=credentials)
        sf = self.snowflake
        credentials: dict[str, Any] = {
            "host": sf["SNOWFLAKE_ACCOUNT"],
            "username": sf["SNOWFLAKE_USER"],
            "database": sf["SNOWFLAKE_DATABASE"],
            "warehouse": sf["SNOWFLAKE_WAREHOUSE"],
            "role": sf.get("SNOWFLAKE_ROLE"),
            "password": sf.get("SNOWFLAKE_PASSWORD"),
            "private_key": sf.get("SNOWFLAKE_PRIVATE_KEY"),
            "private_key_path": sf.get("SNOWFLAKE_PRIVATE_KEY_PATH"),
            "private_key_passphrase": sf.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"),
        }
        return dlt.destinations.snowflake(credentials={k: v for k, v in credentials.items() if v})

    def connect(self) -> Any:
        """A DB-API connection for small queries (row counts); the caller closes it."""
        if self.kind == "duckdb":
            import duckdb

            connection = duckdb.connect(str(self.duckdb_path))
            connection.execute(f"SET memory_limit = '{self.duckdb_memory_limit}'")
            return connection
        import snowflake.connector

        sf = self.snowflake
        kwargs: dict[str, Any] = {
            "account": sf["SNOWFLAKE_ACCOUNT"],
            "user": sf["SNOWFLAKE_USER"],
            "database": sf["SNOWFLAKE_DATABASE"],
            "warehouse": sf["SNOWFLAKE_WAREHOUSE"],
            "role": sf.get("SNOWFLAKE_ROLE"),
        }
        if sf.get("SNOWFLAKE_PRIVATE_KEY"):
            from cryptography.hazmat.primitives import serialization

            passphrase = sf.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
            key = serialization.load_pem_private_key(
                sf["SNOWFLAKE_PRIVATE_KEY"].encode(), passphrase.encode() if passphrase else None
            )
            kwargs["private_key"] = key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        elif sf.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
            kwargs["private_key_file"] = sf["SNOWFLAKE_PRIVATE_KEY_PATH"]
            kwargs["private_key_file_pwd"] = sf.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
        else:
            kwargs["password"] = sf["SNOWFLAKE_PASSWORD"]
        return snowflake.connector.connect(**{k: v for k, v in kwargs.items() if v is not None})

    def dbt_env(self) -> dict[str, str]:
        """Environment variables that flows/dbt/profiles.yml reads for this warehouse."""
        if self.kind == "duckdb":
            return {"DUCKDB_PATH": str(self.duckdb_path), "DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit}
        # The profile reads every variable, so unset optional ones become empty strings.
        names = SNOWFLAKE_REQUIRED + SNOWFLAKE_OPTIONAL + SNOWFLAKE_AUTH
        return {name: self.snowflake.get(name, "") for name in names}


def resolve_warehouse(
    resolver: CredentialResolver | None = None, environ: dict[str, str] | None = None
) -> Warehouse:
    """Reads WAREHOUSE (default duckdb) and the settings of the chosen warehouse.

    Raises WarehouseConfigError / MissingCredentialsError naming every missing or invalid variable.
    """
    env = os.environ if environ is None else environ
    kind = (env.get("WAREHOUSE") or "duckdb").strip().lower()
    if kind == "duckdb":
        path = Path(env.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH).expanduser().resolve()
        limit = (env.get("DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT).strip()
        if not MEMORY_SIZE.match(limit):
            raise WarehouseConfigError(
                f"DUCKDB_MEMORY_LIMIT must be a size like 384MB or 1GB, got {limit!r}."
            )
        return Warehouse(kind="duckdb", duckdb_path=path, duckdb_memory_limit=limit)
    if kind != "snowflake":
        raise WarehouseConfigError(f"WAREHOUSE must be 'duckdb' or 'snowflake', got {kind!r}.")

    resolver = resolver or CredentialResolver(env)
    values = {name: resolver.get(name) for name in SNOWFLAKE_REQUIRED + SNOWFLAKE_OPTIONAL + SNOWFLAKE_AUTH}
    missing = [name for name in SNOWFLAKE_REQUIRED if not values[name]]
    if not any(values[name] for name in SNOWFLAKE_AUTH):
        missing.append(
            "SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY / SNOWFLAKE_PRIVATE_KEY_PATH for key-pair auth)"
        )
    if missing:
        raise MissingCredentialsError(
            "WAREHOUSE=snowflake but these settings are missing: "
            + ", ".join(missing)
            + ". Set them in .env (or in the AwsSecret block named by CREDENTIALS_AWS_SECRET_BLOCK)."
        )
    if values.get("SNOWFLAKE_PRIVATE_KEY"):
        # .env holds one line per variable: a PEM key may be written with literal \n separators.
        values["SNOWFLAKE_PRIVATE_KEY"] = values["SNOWFLAKE_PRIVATE_KEY"].replace("\\n", "\n")
    key_path = values.get("SNOWFLAKE_PRIVATE_KEY_PATH")
    if key_path and not values.get("SNOWFLAKE_PRIVATE_KEY") and not Path(key_path).is_file():
        raise WarehouseConfigError(f"SNOWFLAKE_PRIVATE_KEY_PATH={key_path} is not a readable file.")
    return Warehouse(kind="snowflake", snowflake={k: v for k, v in values.items() if v})
