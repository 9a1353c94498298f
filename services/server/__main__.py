"""prefect-server's command: `python -m services.server [--host H] [--port P]`.

What `prefect server start` does in the foreground with one worker process (Prefect's app with
the UI and the background services in-process, under uvicorn with Prefect's keep-alive, websocket
and log settings), with the app wrapped in the login throttle. The services start from the app's
lifespan, which the middleware passes through untouched.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping


def public_ui_url(env: Mapping[str, str]) -> str | None:
    """The UI's address as users reach it, in TLS modes: https://PUBLIC_HOSTNAME[:HTTPS_HOST_PORT].

    Prefect puts it in the links it writes (an alert's `flow_run|ui_url`); without it they would
    name the container. With TLS_MODE=off the server cannot know which address users type.
    """
    hostname = env.get("PUBLIC_HOSTNAME", "")
    if env.get("TLS_MODE", "off") in ("", "off") or not hostname:
        return None
    port = env.get("HTTPS_HOST_PORT") or "443"
    return f"https://{hostname}" + ("" if port == "443" else f":{port}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.server", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the container's network
    parser.add_argument("--port", type=int, default=4200)
    args = parser.parse_args(argv)
    url = public_ui_url(os.environ)
    if url:
        os.environ.setdefault("PREFECT_UI_URL", url)  # before Prefect reads its settings (import)

    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    from services.server import event_ordering  # noqa: F401 - its clock starts with the process
    from services.server.login_throttle import LoginThrottle
    from services.server.schema_ready import wait_for_schema

    app = LoginThrottle.from_env(create_app(final=True))
    # Started beside prefect-migrate: imported and built meanwhile, serving once the schema is current.
    wait_for_schema(os.environ, log=lambda message: print(f"server: {message}", flush=True))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
        ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
        log_level=PREFECT_SERVER_LOGGING_LEVEL.value().lower(),
        # The throttle reads X-Forwarded-For itself, from the proxy only.
        proxy_headers=False,
        # Neither uvicorn nor the proxy announces itself (the proxy removes Server as well).
        server_header=False,
    )


if __name__ == "__main__":
    main()
