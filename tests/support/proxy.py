"""A stack with the proxy in a TLS mode, and clients that reach it by its host name.

The test host name does not exist in DNS: clients connect to 127.0.0.1 on the published HTTPS port
and send the name as SNI and Host, as a browser on another machine would after DNS.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.stack import Stack, env_value, free_port


@dataclass
class ProxyStack(Stack):
    hostname: str = "prefect.internal.test"
    tls_mode: str = "internal"
    https_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **super().env,
            "TLS_MODE": self.tls_mode,
            "PUBLIC_HOSTNAME": self.hostname,
            "HTTPS_HOST_PORT": str(self.https_port),
            "HTTP_HOST_PORT": str(self.http_port),
            **self.extra_env,
        }

    @property
    def public_url(self) -> str:
        return f"https://{self.hostname}:{self.https_port}"

    @property
    def credentials(self) -> tuple[str, str]:
        user, password = env_value(self.root / ".env", "PREFECT_API_AUTH_STRING").split(":", 1)
        return user, password

    def caddy_root(self, dest: Path) -> Path:
        """Caddy's own CA (internal mode), copied out of the proxy's data volume as README says."""
        self.compose("cp", "proxy:/data/caddy/pki/authorities/local/root.crt", str(dest))
        return dest

    def https(self, cafile: Path, **kwargs: Any) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(cafile))
        return httpx.Client(
            base_url=self.public_url,
            transport=ToLoopback(self.hostname, verify=context),
            timeout=30,
            **kwargs,
        )

    def container_id(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service).stdout


class ToLoopback(httpx.HTTPTransport):
    """Connects to 127.0.0.1 but keeps the URL's host name for SNI, certificate checks and Host."""

    def __init__(self, hostname: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hostname = hostname

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.hostname:
            request.extensions["sni_hostname"] = self.hostname
            request.url = request.url.copy_with(host="127.0.0.1")
        return super().handle_request(request)


def served_certificate(port: int, hostname: str, cafile: Path | None, timeout: float = 60) -> bytes:
    """The certificate served for `hostname` (DER), verified against `cafile` unless None."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl._create_unverified_context()  # noqa: S323
    deadline = time.monotonic() + timeout
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=hostname) as tls,
            ):
                return tls.getpeercert(binary_form=True) or b""
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def outside_address() -> str:
    """This machine's address as other machines see it (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    assert not address.startswith("127."), address
    return address


def published_ports(container: str) -> dict[str, list[dict[str, str]]]:
    out = subprocess.check_output(["docker", "inspect", "-f", "{{json .NetworkSettings.Ports}}", container])
    return {port: bindings for port, bindings in (json.loads(out) or {}).items() if bindings}


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and its key (PEM files), also usable as its own root."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def assert_http_redirects_to_https(stack: ProxyStack) -> None:
    response = httpx.get(
        f"http://127.0.0.1:{stack.http_port}/v2/dashboard?x=1", headers={"Host": stack.hostname}, timeout=10
    )
    assert (response.status_code, response.headers.get("location")) == (
        308,
        f"{stack.public_url}/v2/dashboard?x=1",
    )


def assert_only_the_proxy_is_reachable_from_other_machines(stack: ProxyStack) -> None:
    exposed = []
    for container in stack.compose("ps", "-q").stdout.split():
        name = subprocess.check_output(["docker", "inspect", "-f", "{{.Name}}", container], text=True).strip()
        for port, bindings in published_ports(container).items():
            exposed += [f"{name} {port}" for b in bindings if b["HostIp"] not in ("127.0.0.1", "::1")]
    proxy = f"/{stack.project}-proxy-1"
    assert sorted(set(exposed)) == [f"{proxy} 443/tcp", f"{proxy} 80/tcp"], exposed
    # Seen from the network: HTTPS answers on the machine's address, the plain API port does not.
    address = outside_address()
    socket.create_connection((address, stack.https_port), timeout=5).close()
    try:
        socket.create_connection((address, stack.port), timeout=5).close()
    except OSError:
        pass
    else:
        raise AssertionError(f"the plain port {stack.port} answers on {address}")
    # On this host the plain port still serves (SSM tunnels, the CLI on the host).
    assert httpx.get(f"{stack.api_url}/health", timeout=10).status_code == 200
