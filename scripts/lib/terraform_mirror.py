"""Prints the root of a local filesystem mirror of the hashicorp/aws Terraform provider.

Where no Terraform registry can be reached (CI, these machines), `terraform init` takes the
provider from such a mirror (a CLI config with `provider_installation { filesystem_mirror {} }`).
The root is the folder above `registry.terraform.io`. Looked up, in order, and fast after the first
time: TF_PROVIDER_MIRROR; a few usual places; the cached result of an earlier search; a search of
the local filesystem that skips pseudo and bulky trees (a few seconds), whose result is cached.
scripts/test exports the result as TF_PROVIDER_MIRROR; tests/terraform reads it.
Usage: python3 terraform_mirror.py   (prints the root; exit 1 with a message when there is none)
Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LIKELY_ROOTS = (
    "/opt/tf-plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
)
# Trees that never hold a mirror and cost most of a full search.
SKIPPED = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/lib/docker", "/var/lib/containerd")  # noqa: S108
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prefect-platform"
CACHE_FILE = CACHE_DIR / "tf-provider-mirror"


def holds_aws_provider(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a mirror root holding hashicorp/aws (unpacked or packed layout)."""
    base = Path(root).expanduser() / "registry.terraform.io" / "hashicorp" / "aws"
    return any(base.glob("*/*/terraform-provider-aws*")) or any(base.glob("terraform-provider-aws_*.zip"))


def search_filesystem() -> str | None:
    prune: list[str] = []
    for path in SKIPPED:
        prune += ["-path", path, "-o"]
    command = ["find", "/", "(", *prune[:-1], ")", "-prune", "-o"]
    command += ["-path", "*/registry.terraform.io/hashicorp/aws/*", "-name", "terraform-provider-aws*"]
    command += ["-print", "-quit"]
    found = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False).stdout.strip()
    return found.split("/registry.terraform.io/", 1)[0] if found else None


def find_mirror(cache_file: Path = CACHE_FILE) -> str | None:
    """The mirror root, or None; TF_PROVIDER_MIRROR, when set, is the only candidate."""
    if configured := os.environ.get("TF_PROVIDER_MIRROR"):
        return configured if holds_aws_provider(configured) else None
    for candidate in LIKELY_ROOTS:
        if holds_aws_provider(candidate):
            return str(Path(candidate).expanduser())
    if cache_file.is_file() and holds_aws_provider(cached := cache_file.read_text().strip()):
        return cached
    root = search_filesystem()
    if root is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(root + "\n")
    return root


if __name__ == "__main__":
    mirror = find_mirror()
    if mirror is None:
        sys.exit(
            "terraform_mirror: no local mirror of hashicorp/aws found "
            "(set TF_PROVIDER_MIRROR to the folder above registry.terraform.io)"
        )
    print(mirror)
