"""A SQL database source built on dlt's sql_database: tables read incrementally and merged.

The database is named by a connection string resolved as a credential (never a parameter, so it
does not show in the UI). Each table's primary key is reflected from the database unless one is
given; rows are read in Arrow chunks (``backend="pyarrow"``) for speed and bounded memory.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.sources.sql_database import sql_database

from flows.params import SqlSource


def sql_shop(cfg: SqlSource, connection_url: str) -> Any:
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
