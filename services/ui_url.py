"""The UI's address as the stack's users open it in a browser, for the links in alerts and logs.

PREFECT_UI_URL when set (a host name behind your own proxy, an SSH tunnel's local port), else
derived from the settings users already gave: https://PUBLIC_HOSTNAME[:HTTPS_HOST_PORT] in TLS
modes, http://<PREFECT_BIND_ADDRESS>:<PREFECT_HOST_PORT> otherwise (localhost for a loopback or
wildcard bind: the address ./scripts/up prints). Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping

LOCAL_BINDS = {"", "127.0.0.1", "0.0.0.0", "::", "::1", "localhost"}  # noqa: S104 - names, not binds


def ui_url(env: Mapping[str, str]) -> str:
    explicit = (env.get("PREFECT_UI_URL") or "").strip()
    if explicit:
        return explicit.rstrip("/")
    hostname = (env.get("PUBLIC_HOSTNAME") or "").strip()
    if (env.get("TLS_MODE") or "off") != "off" and hostname:
        port = (env.get("HTTPS_HOST_PORT") or "443").strip()
        return f"https://{hostname}" + ("" if port == "443" else f":{port}")
    bind = (env.get("PREFECT_BIND_ADDRESS") or "").strip()
    host = "localhost" if bind in LOCAL_BINDS else bind
    return f"http://{host}:{(env.get('PREFECT_HOST_PORT') or '4200').strip()}"


def flow_run_url(base: str, flow_run_id: str) -> str:
    """The run's page in the UI."""
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"
