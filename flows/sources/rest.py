"""A REST API source built on dlt's rest_api: paginated, incremental on an updated-at cursor, merged.

Each resource is one endpoint (``<base_url><resource>``) returning JSON records under
``data_selector``; pages are numbered (``page``/``per_page``) and the API filters on
``cursor_param`` >= the last cursor value, which dlt keeps in its state. Every record is checked
for its primary key and cursor before it is loaded, so malformed records stop the run with a clear
error instead of landing in the warehouse.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator

from flows.credentials import CredentialResolver
from flows.errors import MalformedSourceDataError
from flows.sources.base import SHOP_TABLES, Identifier, Source


class RestSource(Source):
    """A JSON REST API read with dlt's rest_api source (one endpoint per resource)."""

    kind: Literal["rest"] = "rest"
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

    def loaded_tables(self) -> tuple[str, ...]:
        return tuple(self.resources)

    def dlt_source(self, resolver: CredentialResolver) -> Any:
        return rest_shop(self, resolver.get(self.token_secret))


def _record_checker(resource: str, cfg: RestSource) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(record: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise MalformedSourceDataError(
                f"resource {resource!r}: expected a JSON object, got {record!r:.80}"
            )
        key = record.get(cfg.primary_key)
        if key is None or isinstance(key, (dict, list)):
            raise MalformedSourceDataError(
                f"resource {resource!r}: record without a usable primary key {cfg.primary_key!r}: "
                f"{record!r:.200}"
            )
        cursor = record.get(cfg.cursor_field)
        try:
            datetime.fromisoformat(str(cursor).replace("Z", "+00:00"))
        except ValueError:
            raise MalformedSourceDataError(
                f"resource {resource!r}, {cfg.primary_key}={key!r}: {cfg.cursor_field!r} must be an ISO 8601 "
                f"timestamp, got {cursor!r}"
            ) from None
        return record

    return check


def rest_shop(cfg: RestSource, token: str | None) -> Any:
    """The dlt source for ``cfg``; ``token`` is a bearer token or None for an open API."""
    from dlt.sources.rest_api import rest_api_source

    config: dict[str, Any] = {
        "client": {
            "base_url": cfg.base_url,
            "paginator": {
                "type": "page_number",
                "page_param": cfg.page_param,
                "base_page": 1,
                "total_path": None,  # stop at the first empty page
            },
        },
        "resource_defaults": {
            "primary_key": cfg.primary_key,
            "write_disposition": "merge",
            "columns": {cfg.cursor_field: {"data_type": "timestamp"}},
            "endpoint": {"data_selector": cfg.data_selector, "params": {cfg.page_size_param: cfg.page_size}},
        },
        "resources": [
            {
                "name": name,
                "endpoint": {
                    "path": name,
                    "params": {
                        cfg.cursor_param: {
                            "type": "incremental",
                            "cursor_path": cfg.cursor_field,
                            "initial_value": cfg.initial_value,
                        }
                    },
                },
            }
            for name in cfg.resources
        ],
    }
    if token:
        config["client"]["auth"] = {"type": "bearer", "token": token}
    source = rest_api_source(config, name="rest_shop")
    source.max_table_nesting = 0  # nested JSON stays a json column, not child tables
    for name in cfg.resources:
        # insert_at=1 runs the check right after the page is fetched, before the incremental step
        # (which would otherwise fail on a missing cursor with a less specific message).
        source.resources[name].add_map(_record_checker(name, cfg), insert_at=1)
    return source
