"""File helpers shared by the host commands. Standard library only (Python 3.9+)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int) -> None:
    """Replaces ``path`` with ``text`` (temp file in the same folder, fsync, rename).

    A crash at any point leaves the old file or the new one, never a half-written file, and the
    new file never exists with looser permissions than ``mode``, even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
