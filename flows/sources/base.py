"""What every source of the ELT flow is: a settings model (the flow's ``source`` parameter, shown
as a form in the UI) that builds its dlt source when the run starts."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from flows.credentials import CredentialResolver

# Table, column and resource names become warehouse identifiers: keep them plain.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
# The tables the dbt shop project (flows/dbt/shop) reads from a source's raw dataset.
SHOP_TABLES = ("customers", "orders", "payments")


class Source(BaseModel):
    """Base of every source's settings. A subclass sets ``kind: Literal["<name>"] = "<name>"``."""

    # Unknown keys are typos (e.g. "resource" for "resources"): reject them instead of ignoring.
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str

    @property
    def raw_dataset(self) -> str:
        """The warehouse schema the source loads into."""
        return f"raw_{self.kind}"

    def loaded_tables(self) -> tuple[str, ...]:
        """The tables this source loads (checked against what the dbt project needs)."""
        raise NotImplementedError

    def check(self) -> None:
        """Checks that need more than the fields (files, folders); raises ValueError naming the fix."""

    def dlt_source(self, resolver: CredentialResolver) -> Any:
        """The dlt source to run; secrets come from ``resolver`` (imports dlt: call it in a task)."""
        raise NotImplementedError
