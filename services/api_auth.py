"""Which credential the platform's Prefect clients send: an API key (Prefect Cloud) wins.

Prefect's client sends PREFECT_API_AUTH_STRING (basic auth, a self-hosted server) before
PREFECT_API_KEY (a bearer token, Prefect Cloud) when both are set, and .env always holds a generated
auth string. So when a key is set, the auth string is dropped from this process's environment
before Prefect reads its settings: the init, the deploy step and the worker then speak to Cloud
with the key, and the worker passes only the key on to each flow run. An empty key is no key.
Standard library only; services/__init__.py applies it on import, before anything imports Prefect.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


def prefer_api_key(environ: MutableMapping[str, str] = os.environ) -> None:
    if environ.get("PREFECT_API_KEY", "").strip():
        environ.pop("PREFECT_API_AUTH_STRING", None)
    else:
        environ.pop("PREFECT_API_KEY", None)
