"""Snowflake: password or key-pair auth, settings from the environment or the AwsSecret block.

The SNOWFLAKE_* settings are read once into ``SnowflakeWarehouse``; dlt's credentials, the Python
connector's arguments and the dbt profile's variables are each derived from its fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from flows.credentials import CredentialResolver
from flows.errors import MissingCredentialsError, WarehouseConfigError
from flows.warehouses import Warehouse


@dataclass(frozen=True)
class SnowflakeWarehouse(Warehouse):
    kind: ClassVar[str] = "snowflake"
    # Each field is read from SNOWFLAKE_<FIELD>. Secrets are left out of repr: never log them.
    account: str
    user: str
    database: str
    warehouse: str
    role: str = ""
    password: str = field(default="", repr=False)
    # PEM text (in .env one line, newlines written as \n) or a path to a PEM file.
    private_key: str = field(default="", repr=False)
    private_key_path: str = ""
    private_key_passphrase: str = field(default="", repr=False)

    REQUIRED: ClassVar[tuple[str, ...]] = ("account", "user", "database", "warehouse")

    @staticmethod
    def variable(name: str) -> str:
        return f"SNOWFLAKE_{name.upper()}"

    @classmethod
    def from_settings(cls, env: Mapping[str, str], resolver: CredentialResolver) -> SnowflakeWarehouse:
        values = {f.name: resolver.get(cls.variable(f.name)) or "" for f in fields(cls)}
        missing = [cls.variable(name) for name in cls.REQUIRED if not values[name]]
        if not (values["password"] or values["private_key"] or values["private_key_path"]):
            missing.append(
                "SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY / SNOWFLAKE_PRIVATE_KEY_PATH for key-pair auth)"
            )
        if missing:
            raise MissingCredentialsError(
                "WAREHOUSE=snowflake but these settings are missing: "
                + ", ".join(missing)
                + ". Set them in .env (or in the AwsSecret block named by CREDENTIALS_AWS_SECRET_BLOCK)."
            )
        values["private_key"] = values["private_key"].replace("\\n", "\n")
        key_path = values["private_key_path"]
        if key_path and not values["private_key"] and not Path(key_path).is_file():
            raise WarehouseConfigError(f"SNOWFLAKE_PRIVATE_KEY_PATH={key_path} is not a readable file.")
        return cls(**values)

    @property
    def auth(self) -> str:
        return "key-pair" if self.private_key or self.private_key_path else "password"

    def describe(self) -> str:
        return f"snowflake account={self.account} database={self.database} auth={self.auth}"

    def dlt_destination(self) -> Any:
        import dlt

        credentials = {
            "host": self.account,
            "username": self.user,
            "database": self.database,
            "warehouse": self.warehouse,
            "role": self.role,
            "password": self.password,
            "private_key": self.private_key,
            "private_key_path": self.private_key_path,
            "private_key_passphrase": self.private_key_passphrase,
        }
        return dlt.destinations.snowflake(credentials={k: v for k, v in credentials.items() if v})

    def connect(self) -> Any:
        import snowflake.connector

        kwargs: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "database": self.database,
            "warehouse": self.warehouse,
            "role": self.role or None,
        }
        if self.private_key:
            from cryptography.hazmat.primitives import serialization

            passphrase = self.private_key_passphrase.encode() if self.private_key_passphrase else None
            key = serialization.load_pem_private_key(self.private_key.encode(), passphrase)
            kwargs["private_key"] = key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        elif self.private_key_path:
            kwargs["private_key_file"] = self.private_key_path
            kwargs["private_key_file_pwd"] = self.private_key_passphrase or None
        else:
            kwargs["password"] = self.password
        return snowflake.connector.connect(**{k: v for k, v in kwargs.items() if v is not None})

    def dbt_env(self) -> dict[str, str]:
        # The profile reads every variable, so unset optional ones are empty strings.
        return {self.variable(f.name): getattr(self, f.name) for f in fields(self)}
