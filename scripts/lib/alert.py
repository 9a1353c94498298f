"""A message to ALERT_WEBHOOK_URL from a host command (the failed scheduled backup), in the same
Slack-compatible body the failed-run automation sends: {"text": ...}. Standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from scripts.lib.stack import OpsError, say


def post(stack: Any, text: str, timeout: float = 10) -> bool:
    """Posts ``text``; returns whether the webhook took it. Never raises: the caller is failing already."""
    try:
        url = stack.setting("ALERT_WEBHOOK_URL").strip()
    except OpsError:
        return False
    if not url.startswith(("http://", "https://")):
        if url:
            say("alert", f"ALERT_WEBHOOK_URL is not an http(s) URL: {url[:40]!r}")
        return False
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError) as exc:
        say("alert", f"could not post to ALERT_WEBHOOK_URL: {exc}")
        return False
