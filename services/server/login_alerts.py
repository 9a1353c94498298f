"""An alert when the login throttle blocks an address: a burst of failed logins is news.

Posted to ALERT_WEBHOOK_URL (the same Slack-compatible webhook the flow-run alerts use) from the
server's event loop, without waiting for it: a slow or failing webhook never delays a request.
"""

from __future__ import annotations

import asyncio
import logging
import os

import httpx

logger = logging.getLogger("prefect.server.login_throttle")
_pending: set[asyncio.Task[None]] = set()  # keeps running posts referenced until they finish


async def _post(url: str, text: str) -> None:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            (await client.post(url, json={"text": text})).raise_for_status()
    except httpx.HTTPError as error:
        logger.warning("login alert could not be sent to ALERT_WEBHOOK_URL: %s", error)


def alert_blocked(address: str, failures: int, window: float, url: str | None = None) -> None:
    """Schedules the alert for a blocked address; nothing when no webhook is configured."""
    url = url if url is not None else os.environ.get("ALERT_WEBHOOK_URL", "").strip()
    if not url:
        return
    text = (
        f"prefect-platform: {failures} failed logins from {address} within {window:g} s; "
        f"the address gets 429 for {window:g} s. A password guesser, or a client with an old password."
    )
    task = asyncio.get_running_loop().create_task(_post(url, text))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
