"""The ELT flow's parameters as one validated value. Kept free of dlt/dbt imports: it is imported
whenever the flow module is."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from flows.sources import SourceSettings
from flows.sources.base import SHOP_TABLES


class EltRequest(BaseModel):
    """Cross-field checks of the flow's parameters, run before the lock and any load."""

    model_config = ConfigDict(extra="forbid")

    source: SourceSettings
    transform: bool
    full_refresh: bool

    @model_validator(mode="after")
    def _source_ready(self) -> EltRequest:
        self.source.check()
        if self.transform:
            missing = sorted(set(SHOP_TABLES) - set(self.source.loaded_tables()))
            if missing:
                raise ValueError(
                    f"the dbt shop models need the tables {', '.join(SHOP_TABLES)} but the "
                    f"{self.source.kind} source does not load {', '.join(missing)}: add them or pass "
                    "transform=false to only ingest"
                )
        return self

    @property
    def raw_dataset(self) -> str:
        return self.source.raw_dataset

    @property
    def analytics_schema(self) -> str:
        return f"analytics_{self.source.kind}"
