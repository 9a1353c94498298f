"""The backup archive: one .tar.gz, mode 0600, named by its UTC time, with a manifest of checksums.

    <project>-backup-<YYYYmmddTHHMMSSZ>.tar.gz
      postgres/prefect.dump   pg_dump custom format of Prefect's database
      data/...                the data volume (warehouse.duckdb, results/, ...), as prefect-ops streamed it
      env/.env                only with --with-secrets
      manifest.json           last: format, time, commit, versions, sizes, sha256 of every file

Written to a hidden temporary file and renamed when complete, so an archive with the final name is
always whole; `verify` reads every byte and checks it against the manifest before a restore
touches anything. Standard library only (Python 3.9+).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

FORMAT = 1
MANIFEST = "manifest.json"
POSTGRES_DUMP = "postgres/prefect.dump"
DATA_PREFIX = "data/"
ENV_MEMBER = "env/.env"
STAMP = "%Y%m%dT%H%M%SZ"
NAME = re.compile(r"^(?P<project>.+)-backup-(?P<stamp>\d{8}T\d{6}Z)\.tar\.gz$")
CHUNK = 1 << 20


class ArchiveError(Exception):
    """The archive is not a usable backup; the message says why."""


def archive_name(project: str, when: datetime) -> str:
    return f"{project}-backup-{when.strftime(STAMP)}.tar.gz"


def archive_time(path: Path) -> datetime | None:
    match = NAME.match(path.name)
    if not match:
        return None
    return datetime.strptime(match.group("stamp"), STAMP).replace(tzinfo=timezone.utc)  # noqa: UP017


def list_archives(directory: Path, project: str) -> list[Path]:
    """This project's archives in ``directory``, oldest first (by the time in their names)."""
    if not directory.is_dir():
        return []
    found = [
        path
        for path in directory.iterdir()
        if path.is_file() and (m := NAME.match(path.name)) and m.group("project") == project
    ]
    return sorted(found, key=lambda path: path.name)


def to_prune(archives: list[Path], keep: int) -> list[Path]:
    """The archives beyond the newest ``keep`` (``archives`` oldest first)."""
    return archives[: max(len(archives) - keep, 0)]


class _HashingReader:
    """Reads from ``source`` while hashing and counting what passed through."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


@dataclass
class Entry:
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256}


class ArchiveWriter:
    """Builds an archive at ``final`` through a 0600 temporary file; ``close`` commits it."""

    def __init__(self, final: Path, compresslevel: int = 6) -> None:
        self.final = final
        self.partial = final.with_name(f".{final.name}.partial")
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask
        self._file = os.fdopen(fd, "wb")
        self.tar = tarfile.open(  # noqa: SIM115 - closed by close() or abort()
            fileobj=self._file, mode="w:gz", compresslevel=compresslevel, format=tarfile.PAX_FORMAT
        )
        self.members: dict[str, Entry] = {}

    def add_stream(self, info: tarfile.TarInfo, source: IO[bytes] | None) -> None:
        """Adds a member; a regular file's bytes are read from ``source`` (exactly info.size)."""
        if info.isreg():
            reader = _HashingReader(source or io.BytesIO())
            self.tar.addfile(info, reader)  # type: ignore[arg-type]
            if reader.size != info.size:
                raise ArchiveError(f"{info.name}: expected {info.size} bytes, read {reader.size}")
            self.members[info.name] = Entry(info.size, reader.digest.hexdigest())
        else:
            self.tar.addfile(info)

    def add_file(self, path: Path, name: str) -> None:
        info = tarfile.TarInfo(name)
        stat = path.stat()
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o600
        with path.open("rb") as source:
            self.add_stream(info, source)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), int(time.time()), mode
        self.add_stream(info, io.BytesIO(data))

    def close(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Writes the manifest (with every member's size and checksum) last, then renames."""
        manifest = {
            **manifest,
            "format": FORMAT,
            "members": {k: v.as_dict() for k, v in self.members.items()},
        }
        self.add_bytes(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        self.tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.final)
        return manifest

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the archive is being thrown away
            self.tar.close()
        self._file.close()
        self.partial.unlink(missing_ok=True)


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r|gz")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{path} is not a readable .tar.gz ({exc})") from exc


def verify(path: Path) -> dict[str, Any]:
    """Reads the whole archive, checks every member against the manifest; returns the manifest."""
    seen: dict[str, Entry] = {}
    manifest: dict[str, Any] | None = None
    try:
        with _open(path) as tar:
            for member in tar:
                if not member.isreg():
                    continue
                source = tar.extractfile(member)
                if member.name == MANIFEST:
                    manifest = json.loads(source.read() if source else b"{}")
                    continue
                digest = hashlib.sha256()
                size = 0
                while source and (chunk := source.read(CHUNK)):
                    digest.update(chunk)
                    size += len(chunk)
                seen[member.name] = Entry(size, digest.hexdigest())
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{path} is damaged or truncated ({type(exc).__name__}: {exc})") from exc
    if manifest is None:
        raise ArchiveError(f"{path} has no {MANIFEST}: not a backup of this platform (or cut short)")
    if manifest.get("format") != FORMAT:
        raise ArchiveError(
            f"{path} is archive format {manifest.get('format')!r}; this code reads format {FORMAT}"
        )
    expected = {name: Entry(**entry) for name, entry in manifest.get("members", {}).items()}
    problems = [f"{name}: missing" for name in sorted(set(expected) - set(seen))]
    problems += [f"{name}: not in the manifest" for name in sorted(set(seen) - set(expected))]
    problems += [
        f"{name}: checksum or size differs"
        for name in sorted(set(seen) & set(expected))
        if seen[name] != expected[name]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ArchiveError(
            f"{path} fails its checksums ({shown}): it was damaged or altered, not restoring it"
        )
    if POSTGRES_DUMP not in seen:
        raise ArchiveError(f"{path} holds no database dump ({POSTGRES_DUMP})")
    return manifest


def members(path: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """Every member with a reader of its bytes (readable until the next member is taken)."""
    with _open(path) as tar:
        for member in tar:
            yield member, tar.extractfile(member) if member.isreg() else None
