"""The flows' settings, read when a run starts (never at import), with the defaults .env.example
documents. In the stack every flow-run container receives .env; locally the environment (or its
absence) applies, and paths default to ./data under the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class EltSettings:
    ingest_timeout_seconds: int
    transform_timeout_seconds: int
    lock_timeout_seconds: int
    retry_backoff_seconds: float
    data_dir: Path
    dlt_work_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EltSettings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("DATA_DIR") or "data").resolve()
        backoff = (env.get("ELT_RETRY_BACKOFF_SECONDS") or "10").strip()
        try:
            retry_backoff = float(backoff)
        except ValueError:
            raise ValueError(f"ELT_RETRY_BACKOFF_SECONDS must be a number, got {backoff!r}") from None
        return cls(
            ingest_timeout_seconds=_int(env, "ELT_INGEST_TIMEOUT_SECONDS", 3600),
            transform_timeout_seconds=_int(env, "ELT_TRANSFORM_TIMEOUT_SECONDS", 3600),
            lock_timeout_seconds=_int(env, "ELT_LOCK_TIMEOUT_SECONDS", 3600),
            retry_backoff_seconds=retry_backoff,
            data_dir=data_dir,
            dlt_work_dir=(Path(env.get("DLT_WORK_DIR") or data_dir) / "dlt-work").resolve(),
        )

    def dbt_work_dir(self, project: str, target: str, schema: str) -> Path:
        """dbt's target/ and logs/ for one project, target and schema (kept for partial parsing)."""
        path = self.data_dir / "dbt" / project / f"{target}-{schema}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def flow_timeout_seconds() -> int:
    """ELT_FLOW_TIMEOUT_SECONDS. Prefect fixes a flow's timeout when its decorator runs, so this
    one setting is read at import; every flow-run container imports the flow afresh."""
    return _int(os.environ, "ELT_FLOW_TIMEOUT_SECONDS", 7200)
