"""Prints the uv version that pyproject.toml pins (`[tool.uv] required-version`), e.g. `==0.13.9`.

The one reader of that pin: scripts/test and docker/install-from-lock.sh install exactly this uv.
Usage: python3 uv_pin.py [PYPROJECT]   (default: ./pyproject.toml)
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def uv_pin(pyproject: Path) -> str:
    with pyproject.open("rb") as handle:
        return tomllib.load(handle)["tool"]["uv"]["required-version"]


if __name__ == "__main__":
    print(uv_pin(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")))
