"""scripts/lib/install_terraform.py: installs only a binary whose checksum matches the pin."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.lib import install_terraform


@pytest.fixture
def releases(tmp_path: Path) -> Iterator[Path]:
    """A loopback stand-in of the releases site, serving files from a folder laid out like it."""
    root = tmp_path / "releases"
    (root / install_terraform.VERSION).mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root.joinpath("url").write_text(f"http://127.0.0.1:{server.server_address[1]}")
    yield root
    server.shutdown()


def publish(releases: Path, binary: bytes) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("terraform", binary)
    name = f"terraform_{install_terraform.VERSION}_linux_amd64.zip"
    (releases / install_terraform.VERSION / name).write_bytes(buffer.getvalue())
    return releases.joinpath("url").read_text()


def test_a_binary_that_does_not_match_the_pin_is_not_installed(releases: Path, tmp_path: Path) -> None:
    url = publish(releases, b"#!/bin/sh\necho not terraform\n")
    dest = tmp_path / "bin" / "terraform"
    with pytest.raises(install_terraform.InstallError, match="not the pinned one"):
        install_terraform.install(dest, "linux_amd64", url)
    assert not dest.parent.exists() or not list(dest.parent.iterdir())


def test_the_pinned_binary_is_installed_executable(releases: Path, tmp_path: Path) -> None:
    local = shutil.which("terraform")
    if local is None or hashlib.sha256(Path(local).read_bytes()).hexdigest() not in (
        install_terraform.BINARY_SHA256.values()
    ):
        pytest.skip("needs the pinned Terraform binary on this machine to serve it")
    url = publish(releases, Path(local).read_bytes())
    dest = install_terraform.install(tmp_path / "terraform", "linux_amd64", url)
    assert dest.stat().st_mode & 0o777 == 0o755
    assert dest.read_bytes() == Path(local).read_bytes()


def test_unreachable_releases_and_unknown_platforms_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(install_terraform.InstallError, match="could not download"):
        install_terraform.install(tmp_path / "terraform", "linux_amd64", "http://127.0.0.1:9")
    with pytest.raises(install_terraform.InstallError, match=r"install Terraform 1\.11\.4 yourself"):
        install_terraform.install(tmp_path / "terraform", "plan9_386")
    assert not (tmp_path / "terraform").exists()
