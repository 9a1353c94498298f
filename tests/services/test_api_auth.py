"""services/api_auth.py: with an API key (Prefect Cloud) the generated auth string is not sent."""

from __future__ import annotations

import os
import subprocess
import sys

from services.api_auth import prefer_api_key
from tests.support import REPO


def test_a_key_drops_the_auth_string_and_an_empty_key_is_no_key() -> None:
    with_key = {"PREFECT_API_KEY": "pnu_x", "PREFECT_API_AUTH_STRING": "admin:pw"}
    prefer_api_key(with_key)
    assert with_key == {"PREFECT_API_KEY": "pnu_x"}
    empty_key = {"PREFECT_API_KEY": " ", "PREFECT_API_AUTH_STRING": "admin:pw"}
    prefer_api_key(empty_key)
    assert empty_key == {"PREFECT_API_AUTH_STRING": "admin:pw"}


def test_importing_the_platform_package_applies_it_before_prefect_reads_its_settings() -> None:
    """What the worker's flow runs inherit is Prefect's settings of the worker process."""
    probe = (
        "import services, prefect.settings as s; "
        "print(s.PREFECT_API_KEY.value(), s.PREFECT_API_AUTH_STRING.value())"
    )
    env = {**os.environ, "PREFECT_API_KEY": "pnu_probe", "PREFECT_API_AUTH_STRING": "admin:generated"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["pnu_probe", "None"]
