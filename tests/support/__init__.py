"""What the tests share: the repository's root, fixtures' building blocks and the e2e stack driver."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
