"""Debian's chromium for the UI test: in a network namespace of its own when the tests run as root.

Chromium aborts every request in flight (net::ERR_NETWORK_CHANGED) whenever the host's network
interfaces change, and Docker adds one for each container it starts: the flow run the test starts
from the UI, or any other stack on the same engine. In its own namespace the browser sees one
interface that never changes (a veth pair to the host) and reaches the proxy's published port the way
another machine does: by the host's address, never its loopback.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# What ../shared/VERSIONS.md says Debian's chromium needs under Playwright here.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Run inside the namespace (its /proc/sys/net is the namespace's own); absent without kernel IPv6.
NO_IPV6 = (
    "for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; "
    'do [ ! -e "$f" ] || echo 1 > "$f"; done'
)


@dataclass(frozen=True)
class Chromium:
    executable: str  # what Playwright launches
    host_address: str  # the address of this host as the browser reaches it


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def chromium_browser(scratch: Path) -> Iterator[Chromium]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing (./scripts/test installs it)"
    if os.geteuid() != 0 or not shutil.which("ip"):
        yield Chromium(chromium, "127.0.0.1")  # shares the host's interfaces: may see network changes
        return
    name = f"pp{uuid.uuid4().hex[:8]}"
    block = random.randrange(0, 1 << 14) * 4  # a /30 in 10.254.0.0/16
    host, guest = (f"10.254.{(block + n) >> 8}.{(block + n) & 255}" for n in (1, 2))
    ip("netns", "add", name)
    try:
        # No IPv6 inside: the kernel would give the interface a link-local address a second or two
        # after it comes up (once duplicate detection ends), which chromium takes for a network
        # change, aborting the UI's scripts mid-load (a blank page: the cause of a red CI).
        ip("netns", "exec", name, "sh", "-c", NO_IPV6)
        ip("link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}g")
        ip("link", "set", f"{name}g", "netns", name)
        ip("netns", "exec", name, "ip", "link", "set", f"{name}g", "addrgenmode", "none")
        ip("addr", "add", f"{host}/30", "dev", f"{name}h")
        ip("link", "set", f"{name}h", "up")
        for command in (
            ("addr", "add", f"{guest}/30", "dev", f"{name}g"),
            ("link", "set", f"{name}g", "up"),
            ("link", "set", "lo", "up"),
            ("route", "add", "default", "via", host),
        ):
            ip("netns", "exec", name, "ip", *command)
        wrapper = scratch / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {name} {chromium} "$@"\n')
        wrapper.chmod(0o755)
        yield Chromium(str(wrapper), host)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)  # removes the veth pair too
