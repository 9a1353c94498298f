"""Installs the Terraform CLI the tests use (1.11.4, linux_amd64) when it is missing.

scripts/test runs it as root when `terraform` is not on PATH, as it installs Debian's postgresql:
Debian has no Terraform package, so this takes HashiCorp's release zip and checks the binary in it
against the SHA-256 pinned here before anything is written. A download that fails or does not
match installs nothing and says why. On machines where the test machines' image already has
terraform (CI here), it is never called.
Usage: python3 install_terraform.py [DEST]   (default /usr/local/bin/terraform)
Standard library only.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

VERSION = "1.11.4"
# SHA-256 of the `terraform` binary inside terraform_<VERSION>_<platform>.zip.
BINARY_SHA256 = {"linux_amd64": "268000fca5c61021c6396893d9483007ba589ad9d0aaccbd7dfa8c78bf7dbe23"}
RELEASES = os.environ.get("TERRAFORM_RELEASES_URL", "https://releases.hashicorp.com/terraform")


class InstallError(RuntimeError):
    pass


def current_platform() -> str:
    machine = platform.machine()
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{machine}"


def install(dest: Path, target: str | None = None, releases: str = RELEASES) -> Path:
    target = target or current_platform()
    if target not in BINARY_SHA256:
        raise InstallError(
            f"no pinned checksum for {target}; install Terraform {VERSION} yourself "
            "(https://developer.hashicorp.com/terraform/install)"
        )
    url = f"{releases}/{VERSION}/terraform_{VERSION}_{target}.zip"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - a fixed https URL
            archive = response.read()
    except OSError as exc:
        raise InstallError(f"could not download {url}: {exc}") from exc
    try:
        binary = zipfile.ZipFile(io.BytesIO(archive)).read("terraform")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise InstallError(f"{url} is not a Terraform release zip: {exc}") from exc
    digest = hashlib.sha256(binary).hexdigest()
    if digest != BINARY_SHA256[target]:
        raise InstallError(f"the terraform binary in {url} has SHA-256 {digest}, not the pinned one")
    # Written beside the destination, then renamed: never a half-written binary on PATH.
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as handle:
        handle.write(binary)
    Path(handle.name).chmod(0o755)
    Path(handle.name).replace(dest)
    return dest


if __name__ == "__main__":
    destination = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/local/bin/terraform")
    print(f"install_terraform: downloading Terraform {VERSION}", file=sys.stderr)
    try:
        print(install(destination))
    except InstallError as error:
        sys.exit(f"install_terraform: {error}")
