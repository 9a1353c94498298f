"""The address prefect-server writes into its links (alerts' run URLs) follows PUBLIC_HOSTNAME."""

from __future__ import annotations

import pytest

from services.server.__main__ import public_ui_url


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"TLS_MODE": "acme", "PUBLIC_HOSTNAME": "prefect.example.com"}, "https://prefect.example.com"),
        (
            {"TLS_MODE": "internal", "PUBLIC_HOSTNAME": "prefect.lan", "HTTPS_HOST_PORT": "8443"},
            "https://prefect.lan:8443",
        ),
        ({"TLS_MODE": "files", "PUBLIC_HOSTNAME": "p.corp", "HTTPS_HOST_PORT": "443"}, "https://p.corp"),
        ({"TLS_MODE": "off", "PUBLIC_HOSTNAME": "prefect.example.com"}, None),  # plain HTTP: unknown
        ({"TLS_MODE": "acme", "PUBLIC_HOSTNAME": ""}, None),
        ({}, None),
    ],
)
def test_public_ui_url(env: dict[str, str], url: str | None) -> None:
    assert public_ui_url(env) == url
