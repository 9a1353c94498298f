"""End to end: TLS_MODE=acme against Pebble, Let's Encrypt's ACME test server, on the stack's network.

The stack is the product as shipped plus a test-only docker-compose.override.yml: a `pebble`
service (docker/pebble-test: Debian's pebble) and a network alias that makes the test host name
resolve to the proxy, which is how Pebble reaches Caddy for the HTTP-01 challenge. Caddy orders a
certificate for the name, serves it, and after a restart serves the same one without a new order.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.support.proxy import (
    ProxyStack,
    assert_http_redirects_to_https,
    assert_only_the_proxy_is_reachable_from_other_machines,
    self_signed,
    served_certificate,
)
from tests.support.stack import copy_checkout, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

HOSTNAME = "prefect.acme.test"

OVERRIDE = """\
# Test only (tests/e2e/test_proxy_acme.py): an ACME CA on the stack's network.
services:
  pebble:
    image: {project}-pebble
    build: {{context: docker/pebble-test}}
    volumes: ["./.pebble-tls:/etc/pebble/tls:ro"]
    ports: ["127.0.0.1::15000"]
    networks: [platform]
  proxy:
    depends_on:
      pebble: {{condition: service_started}}
    networks:
      platform:
        aliases: [{hostname}]
"""


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ProxyStack]:
    root = tmp_path_factory.mktemp("clone")
    copy_checkout(root)
    # Pebble's ACME endpoint speaks HTTPS with this certificate; the proxy trusts it as ACME_CA_ROOT.
    cert, key = self_signed(root / ".pebble-tls", "pebble")
    key.chmod(0o644)  # read by Pebble's unprivileged user; a throwaway test key
    stack = ProxyStack(
        root,
        tls_mode="acme",
        hostname=HOSTNAME,
        extra_env={
            "ACME_EMAIL": "ops@example.com",
            "ACME_CA_URL": "https://pebble:14000/dir",
            "ACME_CA_ROOT": str(cert),
        },
    )
    (root / "docker-compose.override.yml").write_text(
        OVERRIDE.format(project=stack.project, hostname=HOSTNAME)
    )
    try:
        with running(stack, request):
            yield stack
    finally:
        subprocess.run(["docker", "rmi", "-f", f"{stack.project}-pebble"], capture_output=True)


@pytest.fixture(scope="module")
def pebble_root(stack: ProxyStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root Pebble signs with (made at its start), from its management interface."""
    port = stack.compose("port", "pebble", "15000").stdout.strip().rsplit(":", 1)[1]
    root = httpx.get(f"https://127.0.0.1:{port}/roots/0", verify=False, timeout=10)  # noqa: S501 - the test's own CA
    root.raise_for_status()
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(root.text)
    return path


def issued(stack: ProxyStack) -> list[int]:
    """Serial numbers Pebble issued (it logs them in hex, zero-padded to whole bytes)."""
    serials = re.findall(r"Issued certificate serial (\w+)", stack.logs("pebble"))
    return [int(serial, 16) for serial in serials]


def test_up_prints_the_public_https_address(stack: ProxyStack) -> None:
    assert stack.public_url in stack.up_result.stdout  # type: ignore[attr-defined]


def test_a_certificate_from_pebble_is_served_for_the_host_name(stack: ProxyStack, pebble_root: Path) -> None:
    served = served_certificate(stack.https_port, HOSTNAME, cafile=pebble_root)  # verified chain and name
    certificate = x509.load_der_x509_certificate(served)
    assert "Pebble" in certificate.issuer.rfc4514_string(), certificate.issuer
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [HOSTNAME]
    assert issued(stack) == [certificate.serial_number]


def test_http_redirects_and_only_the_proxy_is_reachable(stack: ProxyStack) -> None:
    assert_http_redirects_to_https(stack)
    assert_only_the_proxy_is_reachable_from_other_machines(stack)


def test_a_restart_serves_the_same_certificate_without_a_new_order(
    stack: ProxyStack, pebble_root: Path
) -> None:
    before = served_certificate(stack.https_port, HOSTNAME, cafile=pebble_root)
    orders_before = stack.logs("pebble").count("POST /order-plz")
    restarted_at = int(time.time())
    stack.compose("restart", "proxy")
    after = served_certificate(stack.https_port, HOSTNAME, cafile=pebble_root)
    assert after == before
    assert stack.logs("pebble").count("POST /order-plz") == orders_before == 1
    assert len(issued(stack)) == 1
    # It came from the proxy's volume: the restarted Caddy loaded it instead of obtaining one.
    since_restart = stack.compose("logs", "--no-color", "--since", str(restarted_at), "proxy").stdout
    assert "certificate obtained" not in since_restart and "obtaining certificate" not in since_restart


def test_acme_without_a_host_name_stops_up_before_anything_changes(stack: ProxyStack) -> None:
    running = stack.compose("ps", "-q").stdout.split()
    result = subprocess.run(
        ["./scripts/up", "--no-build"],
        cwd=stack.root,
        env={**stack.env, "PUBLIC_HOSTNAME": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "TLS_MODE=acme needs PUBLIC_HOSTNAME" in result.stderr, result.stderr
    assert stack.compose("ps", "-q").stdout.split() == running  # nothing was restarted or recreated
