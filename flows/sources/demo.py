"""The offline demo source: the shop's CSV files (flows/sample_data/shop), one folder per day.

Each day's files hold the rows created or changed that day. The resources are incremental on
``updated_at`` and merged on ``id``, so loading the same days twice adds nothing and a later day
updates rows in place. Files are read as Arrow record batches, which dlt loads without
per-row Python work and with bounded memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from flows.credentials import CredentialResolver
from flows.errors import MalformedSourceDataError
from flows.sources.base import SHOP_TABLES, Source

SHIPPED_SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "shop"
REQUIRED = ("id", "updated_at")
BLOCK_SIZE = 1 << 20  # bytes of CSV per record batch (~7,500 rows): see _read_batches


class DemoSource(Source):
    """The offline demo shop: CSV files per day under data_dir (day_1, day_2, ...)."""

    kind: Literal["demo"] = "demo"
    data_dir: str | None = Field(
        default=None,
        description="Folder with day_<n>/<table>.csv files; default: DEMO_DATA_DIR or the shipped sample.",
    )
    through_day: int | None = Field(
        default=None, ge=1, description="Load days 1..through_day only; default: every day in data_dir."
    )

    def resolved_dir(self) -> Path:
        return Path(self.data_dir or os.environ.get("DEMO_DATA_DIR") or SHIPPED_SAMPLE_DIR)

    def loaded_tables(self) -> tuple[str, ...]:
        return SHOP_TABLES

    def check(self) -> None:
        folder = self.resolved_dir()
        if not day_folders(folder, None):
            raise ValueError(f"demo data folder {folder} has no day_<n> folders")

    def dlt_source(self, resolver: CredentialResolver) -> Any:
        return demo_shop(self.resolved_dir(), self.through_day)


def schemas() -> dict[str, dict[str, Any]]:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return {
        "customers": {
            "id": pa.int64(),
            "first_name": pa.string(),
            "last_name": pa.string(),
            "email": pa.string(),
            "country": pa.string(),
            "created_at": ts,
            "updated_at": ts,
        },
        "orders": {
            "id": pa.int64(),
            "customer_id": pa.int64(),
            "order_date": pa.date32(),
            "status": pa.string(),
            "created_at": ts,
            "updated_at": ts,
        },
        "payments": {
            "id": pa.int64(),
            "order_id": pa.int64(),
            "method": pa.string(),
            "amount_cents": pa.int64(),
            "status": pa.string(),
            "created_at": ts,
            "updated_at": ts,
        },
    }


def day_folders(data_dir: Path, through_day: int | None) -> list[Path]:
    """The day_<n> folders in day order, up to ``through_day``."""
    days = sorted(
        (int(p.name.removeprefix("day_")), p)
        for p in data_dir.glob("day_*")
        if p.is_dir() and p.name.removeprefix("day_").isdigit()
    )
    return [p for n, p in days if through_day is None or n <= through_day]


def _read_batches(path: Path, table: str) -> Iterator[Any]:
    """The file's rows as Arrow tables of about BLOCK_SIZE bytes of CSV each.

    Arrow's streaming reader parses a few dozen blocks ahead of the consumer, so the block size sets
    the memory: 8 MiB blocks held about 310 MiB per open file (1 GiB in all while dlt extracted the
    three tables of 10M orders, which a 1 GiB flow-run container did not survive); 1 MiB blocks
    hold about 40 MiB at the same parsing speed.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    # Unknown extra columns are kept (schema evolution), typed columns are checked while parsing.
    options = pacsv.ConvertOptions(column_types=schemas()[table], strings_can_be_null=False)
    try:
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE), convert_options=options
        )
        for batch in reader:
            chunk = pa.Table.from_batches([batch])
            for column in REQUIRED:
                if column not in chunk.column_names:
                    raise MalformedSourceDataError(f"{path}: column {column!r} is missing")
                nulls = chunk[column].null_count
                if nulls:
                    first = pc.index(pc.is_null(chunk[column]), True).as_py()
                    raise MalformedSourceDataError(
                        f"{path}: {nulls} row(s) have no {column!r} "
                        f"(first at data row {first + 1} of its block)"
                    )
            # Checked non-null above; saying so in the schema matches dlt's primary-key hints.
            schema = chunk.schema
            for column in REQUIRED:
                i = schema.get_field_index(column)
                schema = schema.set(i, schema.field(i).with_nullable(False))
            yield chunk.cast(schema)
    except pa.ArrowInvalid as exc:
        raise MalformedSourceDataError(f"{path}: {exc}") from exc


def _table_resource(table: str, folders: list[Path]) -> Any:
    import dlt

    cursor = dlt.sources.incremental("updated_at", initial_value=datetime(1970, 1, 1, tzinfo=UTC))

    @dlt.resource(name=table, primary_key="id", write_disposition="merge")
    def rows(updated_at: dlt.sources.incremental[datetime] = cursor) -> Iterator[Any]:
        for folder in folders:
            path = folder / f"{table}.csv"
            if path.exists():
                yield from _read_batches(path, table)

    return rows


def demo_shop(data_dir: Path, through_day: int | None = None) -> Any:
    """The dlt source of the CSV files under ``data_dir`` (days 1..through_day)."""
    import dlt

    @dlt.source(name="demo_shop", max_table_nesting=0)
    def shop() -> Any:
        folders = day_folders(Path(data_dir), through_day)
        if not folders:
            raise MalformedSourceDataError(f"{data_dir} has no day_<n> folders to load")
        return [_table_resource(table, folders) for table in SHOP_TABLES]

    return shop()
