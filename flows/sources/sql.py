"""A SQL database source built on dlt's sql_database: tables read incrementally and merged.

The database is named by a connection string resolved as a credential (never a parameter, so it
does not show in the UI). Each table's primary key is reflected from the database unless one is
given; rows are read in Arrow chunks (``backend="pyarrow"``) for speed and bounded memory.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flows.credentials import CredentialResolver
from flows.sources.base import SHOP_TABLES, Identifier, Source


class SqlSource(Source):
    """Tables of a SQL database (Postgres) read with dlt's sql_database source."""

    kind: Literal["sql"] = "sql"
    connection_secret: Identifier = Field(
        default="SQL_SOURCE_URL",
        description="Credential name of the connection string, e.g. postgresql://user:pw@host:5432/db",
    )
    schema_name: Identifier = "public"
    tables: list[Identifier] = Field(default=list(SHOP_TABLES), min_length=1)
    cursor_field: Identifier = "updated_at"
    primary_key: Identifier | None = Field(
        default=None, description="Merge key; default: each table's own primary key."
    )
    chunk_size: int = Field(default=50_000, ge=100, le=1_000_000)

    def loaded_tables(self) -> tuple[str, ...]:
        return tuple(self.tables)

    def dlt_source(self, resolver: CredentialResolver) -> Any:
        (url,) = resolver.require([self.connection_secret], "the sql source").values()
        return sql_shop(self, url)


def sql_shop(cfg: SqlSource, connection_url: str) -> Any:
    import dlt
    from dlt.sources.sql_database import sql_database

    source = sql_database(
        credentials=connection_url,
        schema=cfg.schema_name,
        table_names=list(cfg.tables),
        backend="pyarrow",
        chunk_size=cfg.chunk_size,
        reflection_level="full",
    )
    source.max_table_nesting = 0
    for table in cfg.tables:
        hints: dict[str, Any] = {
            "incremental": dlt.sources.incremental(cfg.cursor_field),
            "write_disposition": "merge",
        }
        if cfg.primary_key:
            hints["primary_key"] = cfg.primary_key
        resource = source.resources[table]
        resource.apply_hints(**hints)
        columns = resource.compute_table_schema().get("columns", {})
        if not any(column.get("primary_key") for column in columns.values()):
            # Without a key, "merge" would append and re-runs would duplicate rows.
            raise ValueError(
                f"table {cfg.schema_name}.{table} has no primary key to merge on: "
                "add one in the database or set the sql.primary_key parameter"
            )
    return source
