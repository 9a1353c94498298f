"""scripts/lib/archive.py: the backup archive's format, its checksums and retention."""

from __future__ import annotations

import gzip
import io
import json
import stat
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scripts.lib import archive, backup
from scripts.lib.archive import ArchiveError, ArchiveWriter, archive_name, list_archives, to_prune, verify

WHEN = datetime(2026, 11, 25, 5, 0, 0, tzinfo=UTC)


def write_archive(
    directory: Path, members: dict[str, bytes], project: str = "demo", when: datetime = WHEN
) -> Path:
    final = directory / archive_name(project, when)
    writer = ArchiveWriter(final)
    for name, data in members.items():
        writer.add_bytes(name, data)
    writer.close({"project": project, "prefect": {"alembic_revision": "abc123"}})
    return final


def rewrite(path: Path, change: dict[str, bytes | None]) -> None:
    """Rewrites the archive with members replaced (bytes) or dropped (None), manifest kept as is."""
    out = io.BytesIO()
    with tarfile.open(path, "r:gz") as old, tarfile.open(fileobj=out, mode="w:gz") as new:
        for member in old:
            data = old.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                if data is None:
                    continue
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
    path.write_bytes(out.getvalue())


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write_archive(
        tmp_path, {archive.POSTGRES_DUMP: b"PGDMP-dump", "data/warehouse.duckdb": b"\x00" * 5000}
    )


def test_archive_is_private_named_by_time_and_verified(good: Path) -> None:
    assert good.name == "demo-backup-20261125T050000Z.tar.gz"
    assert stat.S_IMODE(good.stat().st_mode) == 0o600
    assert not list(good.parent.glob(".*partial"))
    manifest = verify(good)
    assert manifest["format"] == archive.FORMAT and manifest["project"] == "demo"
    assert manifest["members"]["data/warehouse.duckdb"]["size"] == 5000
    with tarfile.open(good) as tar:
        assert tar.getnames()[-1] == archive.MANIFEST  # written last, after every checksum is known


def test_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        path = write_archive(tmp_path, {archive.POSTGRES_DUMP: b"x"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data/warehouse.duckdb": b"\x01" * 5000}, "data/warehouse.duckdb: checksum or size differs"),
        ({"data/warehouse.duckdb": None}, "data/warehouse.duckdb: missing"),
        ({"data/extra": b"sneaked in"}, "data/extra: not in the manifest"),
        ({archive.MANIFEST: None}, "has no manifest.json"),
    ],
)
def test_any_alteration_is_refused_naming_what_differs(good: Path, change: dict, message: str) -> None:
    if "data/extra" in change:  # an added member: append it
        with tarfile.open(good, "r:gz") as old:
            members = [(m, old.extractfile(m).read()) for m in old]  # type: ignore[union-attr]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as new:
            for member, data in members:
                new.addfile(member, io.BytesIO(data))
            info = tarfile.TarInfo("data/extra")
            info.size = len(change["data/extra"])
            new.addfile(info, io.BytesIO(change["data/extra"]))
        good.write_bytes(out.getvalue())
    else:
        rewrite(good, change)
    with pytest.raises(ArchiveError, match=message.replace(".", r"\.")):
        verify(good)


def test_a_truncated_archive_is_refused(good: Path) -> None:
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArchiveError, match=r"damaged or truncated|no manifest"):
        verify(good)


def test_an_archive_without_a_database_dump_is_refused(tmp_path: Path) -> None:
    path = write_archive(tmp_path, {"data/warehouse.duckdb": b"x"})
    with pytest.raises(ArchiveError, match="no database dump"):
        verify(path)


def test_not_a_gzip_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / archive_name("demo", WHEN)
    path.write_bytes(gzip.compress(b"not a tar") + b"junk")
    with pytest.raises(ArchiveError):
        verify(path)


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path / archive_name("demo", WHEN))
    writer.add_bytes(archive.POSTGRES_DUMP, b"partial")
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_retention_keeps_the_newest_of_this_project_only(tmp_path: Path) -> None:
    mine = [
        write_archive(tmp_path, {archive.POSTGRES_DUMP: b"x"}, when=WHEN + timedelta(days=d))
        for d in range(5)
    ]
    other = write_archive(tmp_path, {archive.POSTGRES_DUMP: b"x"}, project="other-stack")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("keep me")
    assert list_archives(tmp_path, "demo") == mine  # oldest first
    assert to_prune(mine, 3) == mine[:2] and to_prune(mine, 9) == []
    removed = backup.prune(tmp_path, "demo", keep=3)
    assert removed == mine[:2]
    assert sorted(tmp_path.iterdir()) == sorted([*mine[2:], other, unrelated])


def test_manifest_lists_sizes_and_sha256_of_every_file(good: Path) -> None:
    import hashlib

    with tarfile.open(good) as tar:
        manifest = json.loads(tar.extractfile(archive.MANIFEST).read())  # type: ignore[union-attr]
    assert manifest["members"][archive.POSTGRES_DUMP] == {
        "size": len(b"PGDMP-dump"),
        "sha256": hashlib.sha256(b"PGDMP-dump").hexdigest(),
    }


def test_a_new_host_takes_env_from_a_with_secrets_archive(tmp_path: Path) -> None:
    from scripts.lib.restore import ensure_env
    from scripts.lib.stack import Stack

    host = tmp_path / "new-host"
    host.mkdir()
    (host / ".env.example").write_text("POSTGRES_PASSWORD=__GENERATE__\nSNOWFLAKE_PASSWORD=\nPLATFORM_DIR=\n")
    saved = "POSTGRES_PASSWORD=old-one\nSNOWFLAKE_PASSWORD=s3cret\nPLATFORM_DIR=/opt/elsewhere\n"
    path = write_archive(tmp_path, {archive.POSTGRES_DUMP: b"x", archive.ENV_MEMBER: saved.encode()})
    ensure_env(Stack(root=host), path, {"with_secrets": True})
    env = (host / ".env").read_text()
    assert "SNOWFLAKE_PASSWORD=s3cret" in env and "POSTGRES_PASSWORD=old-one" in env
    assert f"PLATFORM_DIR={host}" in env  # derived for this host, not copied
    assert stat.S_IMODE((host / ".env").stat().st_mode) == 0o600
    # An existing .env always wins over the archive's.
    (host / ".env").write_text("POSTGRES_PASSWORD=current\n")
    ensure_env(Stack(root=host), path, {"with_secrets": True})
    assert "POSTGRES_PASSWORD=current" in (host / ".env").read_text()
