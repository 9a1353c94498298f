"""The proxy image on its own: real Caddy from docker/proxy, without the stack.

Settings are checked before Caddy starts (a wrong one names itself), and TLS_MODE=files serves the
certificate it is given. The internal and acme modes are tested with the whole stack in
tests/e2e/test_proxy.py and tests/e2e/test_proxy_acme.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.proxy import self_signed, served_certificate

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def image(docker_engine: None) -> Iterator[str]:
    tag = f"pptest-proxy-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "build", "-q", "-f", "docker/proxy/Dockerfile", "-t", tag, "."],
        cwd=REPO,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=True,
        capture_output=True,
    )
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def check(image: str, env: dict[str, str], mounts: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    args = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
    volumes = [item for mount in mounts for item in ("-v", mount)]
    return subprocess.run(
        ["docker", "run", "--rm", *args, *volumes, image, "--check"], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TLS_MODE": "https"}, "TLS_MODE must be off, acme, internal or files (got 'https')"),
        ({"TLS_MODE": "off"}, "TLS_MODE=off: the stack serves plain HTTP without this proxy"),
        ({"TLS_MODE": "acme", "ACME_EMAIL": "ops@example.com"}, "TLS_MODE=acme needs PUBLIC_HOSTNAME"),
        (
            {"TLS_MODE": "internal", "PUBLIC_HOSTNAME": "https://x.example.com"},
            "PUBLIC_HOSTNAME must be a host",
        ),
        ({"TLS_MODE": "acme", "PUBLIC_HOSTNAME": "x.example.com"}, "TLS_MODE=acme needs ACME_EMAIL"),
        (
            {"TLS_MODE": "internal", "PUBLIC_HOSTNAME": "x.example.com", "PREFECT_BIND_ADDRESS": "0.0.0.0"},
            "PREFECT_BIND_ADDRESS must stay 127.0.0.1",
        ),
        (
            {
                "TLS_MODE": "acme",
                "PUBLIC_HOSTNAME": "x.example.com",
                "ACME_EMAIL": "a@b.co",
                "ACME_CA_URL": "http://ca",
            },
            "ACME_CA_URL must be an https://",
        ),
        ({"TLS_MODE": "files", "PUBLIC_HOSTNAME": "x.example.com"}, "TLS_MODE=files needs TLS_CERT_FILE"),
        (
            {"TLS_MODE": "internal", "PUBLIC_HOSTNAME": "x.example.com", "HTTPS_HOST_PORT": "44x"},
            "HTTPS_HOST_PORT",
        ),
    ],
)
def test_bad_settings_stop_the_proxy_with_a_message_naming_them(
    image: str, env: dict[str, str], message: str
) -> None:
    result = check(image, env)
    assert result.returncode == 2, result
    assert message in result.stderr, result.stderr


def test_good_settings_pass_the_check(image: str) -> None:
    result = check(image, {"TLS_MODE": "internal", "PUBLIC_HOSTNAME": "prefect.internal"})
    assert result.returncode == 0 and "settings are valid" in result.stdout, result


def test_files_mode_serves_the_given_certificate(image: str, tmp_path: Path) -> None:
    name = "prefect.files.test"
    cert_file, key_file = self_signed(tmp_path, name)
    key_file.chmod(0o600)  # as a key file on a server would be: the entrypoint copies it for Caddy
    mounts = (f"{cert_file}:/run/tls/cert.pem:ro", f"{key_file}:/run/tls/key.pem:ro")
    assert check(image, {"TLS_MODE": "files", "PUBLIC_HOSTNAME": name}, mounts).returncode == 0
    wrong = check(
        image, {"TLS_MODE": "files", "PUBLIC_HOSTNAME": name}, (f"{key_file}:/run/tls/cert.pem:ro",)
    )
    assert "TLS_CERT_FILE does not hold a PEM CERTIFICATE" in wrong.stderr, wrong.stderr
    container = f"pptest-proxy-files-{uuid.uuid4().hex[:8]}"
    volumes = [item for mount in mounts for item in ("-v", mount)]
    settings = ["-e", "TLS_MODE=files", "-e", f"PUBLIC_HOSTNAME={name}"]
    subprocess.run(
        ["docker", "run", "-d", "--name", container, "-p", "127.0.0.1::443", *volumes, *settings, image],
        check=True,
        capture_output=True,
    )
    try:
        port = int(
            subprocess.check_output(["docker", "port", container, "443/tcp"], text=True).split(":")[-1]
        )
        served = served_certificate(port, name, cafile=cert_file)  # verified: name and trust
        given = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        assert hashlib.sha256(served).hexdigest() == hashlib.sha256(given).hexdigest()
        user = subprocess.check_output(
            ["docker", "exec", container, "stat", "-c", "%U %n", "/proc/1/exe"], text=True
        )
        assert user.split()[0] == "caddy"  # PID 1 is Caddy, and it never runs as root
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
