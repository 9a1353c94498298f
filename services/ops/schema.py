"""Prefect's database schema (Alembic revisions) as this image's Prefect knows it.

A restore into code whose Prefect does not know the archive's revision would hand the server a
schema from a newer Prefect: refused before anything is touched. An older known revision is fine:
prefect-migrate upgrades it when the stack starts.

The revisions are read from the migration files' `revision = "..."` lines, without importing
Prefect or Alembic (that import alone takes 15-20 s on a busy 2-core host).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REVISION = re.compile(r'^revision\s*=\s*["\']([0-9A-Za-z_]+)["\']', re.MULTILINE)
DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(.+)$", re.MULTILINE)


def versions_dir() -> Path:
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("prefect is not installed in this image")
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "server" / "database" / "_migrations" / "versions" / "postgresql"


def postgres_revisions(folder: Path | None = None) -> list[str]:
    """Every revision of Prefect's Postgres migrations, the head(s) first."""
    revisions: list[str] = []
    parents: set[str] = set()
    for path in sorted((folder or versions_dir()).glob("*.py")):
        text = path.read_text()
        match = REVISION.search(text)
        if not match:
            continue
        revisions.append(match.group(1))
        down = DOWN_REVISION.search(text)
        if down:
            parents.update(re.findall(r"[0-9A-Za-z_]{6,}", down.group(1).replace("None", "")))
    heads = [rev for rev in revisions if rev not in parents]
    return heads + [rev for rev in reversed(revisions) if rev in parents]


def compare(revision: str | None, known: list[str]) -> str:
    """'current', 'older' (migrations will run) or 'unknown' (a newer Prefect's schema)."""
    if not known or revision not in known:
        return "unknown"
    return "current" if revision == known[0] else "older"
