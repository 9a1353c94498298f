"""services/ui_url: links in alerts and logs use the address users open in their browser."""

from __future__ import annotations

import pytest

from services.ui_url import flow_run_url, ui_url


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://localhost:4200"),
        ({"PREFECT_BIND_ADDRESS": "127.0.0.1", "PREFECT_HOST_PORT": "4315"}, "http://localhost:4315"),
        ({"PREFECT_BIND_ADDRESS": "0.0.0.0"}, "http://localhost:4200"),
        ({"PREFECT_BIND_ADDRESS": "10.0.0.5", "PREFECT_HOST_PORT": "80"}, "http://10.0.0.5:80"),
        ({"TLS_MODE": "acme", "PUBLIC_HOSTNAME": "prefect.example.com"}, "https://prefect.example.com"),
        (
            {"TLS_MODE": "internal", "PUBLIC_HOSTNAME": "p.corp", "HTTPS_HOST_PORT": "8443"},
            "https://p.corp:8443",
        ),
        ({"TLS_MODE": "off", "PUBLIC_HOSTNAME": "ignored.example.com"}, "http://localhost:4200"),
        ({"PREFECT_UI_URL": "https://tunnel.example.com/", "TLS_MODE": "acme"}, "https://tunnel.example.com"),
    ],
)
def test_the_ui_address_is_the_one_users_open(env: dict[str, str], url: str) -> None:
    assert ui_url(env) == url


def test_a_run_link_opens_the_run_page() -> None:
    assert flow_run_url("http://localhost:4200/", "abc") == "http://localhost:4200/runs/flow-run/abc"
