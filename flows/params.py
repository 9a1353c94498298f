"""Parameters of the ELT flow, validated by Prefect before the run starts.

Kept free of dlt/dbt imports: this module is imported whenever the flow module is.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SourceName = Literal["demo", "rest", "sql"]
# Table, column and resource names become warehouse identifiers: keep them plain.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
SHOP_TABLES = ("customers", "orders", "payments")
SHIPPED_SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data" / "shop"


class _Strict(BaseModel):
    # Unknown keys are typos (e.g. "resource" for "resources"): reject them instead of ignoring.
    model_config = ConfigDict(extra="forbid")


class DemoSource(_Strict):
    """The offline demo shop: CSV files per day under data_dir (day_1, day_2, ...)."""

    data_dir: str | None = Field(
        default=None,
        description="Folder with day_<n>/<table>.csv files; default: DEMO_DATA_DIR or the shipped sample.",
    )
    through_day: int | None = Field(
        default=None, ge=1, description="Load days 1..through_day only; default: every day in data_dir."
    )

    def resolved_dir(self) -> Path:
        return Path(self.data_dir or os.environ.get("DEMO_DATA_DIR") or SHIPPED_SAMPLE_DIR)


class RestSource(_Strict):
    """A JSON REST API read with dlt's rest_api source (one endpoint per resource)."""

    base_url: str = Field(description="e.g. https://shop.example.com/api/")
    resources: list[Identifier] = Field(default=list(SHOP_TABLES), min_length=1)
    primary_key: Identifier = "id"
    cursor_field: Identifier = Field(default="updated_at", description="Updated-at field of each record.")
    cursor_param: str = Field(default="updated_since", description="Query parameter the API filters on.")
    initial_value: str = Field(default="1970-01-01T00:00:00Z", description="Cursor start (ISO 8601).")
    data_selector: str = Field(default="data", description="JSON path of the records in each response.")
    page_param: str = "page"
    page_size_param: str = "per_page"
    page_size: int = Field(default=100, ge=1, le=10_000)
    token_secret: Identifier = Field(
        default="REST_API_TOKEN", description="Credential name of the bearer token (empty value = no auth)."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"base_url must be an http(s) URL like https://api.example.com/v1/, got {value!r}"
            )
        return value if value.endswith("/") else value + "/"

    @field_validator("initial_value")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"initial_value must be an ISO 8601 timestamp, got {value!r}") from None
        return value

    @field_validator("resources")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"resources must not repeat a name, got {value}")
        return value


class SqlSource(_Strict):
    """Tables of a SQL database (Postgres) read with dlt's sql_database source."""

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


class EltRequest(_Strict):
    """The flow's parameters as one validated value (cross-field checks live here)."""

    source: SourceName
    demo: DemoSource
    rest: RestSource | None
    sql: SqlSource | None
    transform: bool
    full_refresh: bool

    @model_validator(mode="after")
    def _source_configured(self) -> EltRequest:
        if self.source == "rest" and self.rest is None:
            raise ValueError("source='rest' needs the 'rest' parameter (at least base_url)")
        if self.source == "sql" and self.sql is None:
            raise ValueError("source='sql' needs the 'sql' parameter (tables, connection_secret)")
        if self.source == "demo":
            folder = self.demo.resolved_dir()
            if not sorted(folder.glob("day_*")):
                raise ValueError(f"demo data folder {folder} has no day_<n> folders")
        if self.transform:
            tables = {
                "demo": SHOP_TABLES,
                "rest": self.rest and self.rest.resources,
                "sql": self.sql and self.sql.tables,
            }
            missing = sorted(set(SHOP_TABLES) - set(tables[self.source] or ()))
            if missing:
                raise ValueError(
                    f"the dbt shop models need the tables {', '.join(SHOP_TABLES)} but the {self.source} "
                    f"source does not load {', '.join(missing)}: add them or pass transform=false to only "
                    "ingest"
                )
        return self

    @property
    def raw_dataset(self) -> str:
        return f"raw_{self.source}"

    @property
    def analytics_schema(self) -> str:
        return f"analytics_{self.source}"

    def source_config(self) -> Any:
        return {"demo": self.demo, "rest": self.rest, "sql": self.sql}[self.source]
