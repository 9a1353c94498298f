"""A small IMDSv2 endpoint on loopback: enough of EC2's metadata service for the bootstrap.

It enforces the v2 protocol (a PUT for a token with a TTL header, the token on every GET) so a
client that falls back to IMDSv1 fails here as it would on an instance with tokens required.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class InstanceMetadata:
    region: str = "eu-west-1"
    role: str | None = "prefect-platform-instance"
    public_ipv4: str | None = "203.0.113.10"
    instance_id: str = "i-0123456789abcdef0"
    access_key_id: str = "ASIAFAKEIMDSROLE0001"
    secret_access_key: str = "fake-imds-role-secret-key"
    session_token: str = "fake-imds-session-token"
    tokens: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def values(self) -> dict[str, str]:
        out = {"placement/region": self.region, "instance-id": self.instance_id}
        if self.public_ipv4:
            out["public-ipv4"] = self.public_ipv4
        if self.role:
            out["iam/security-credentials/"] = self.role
            out[f"iam/security-credentials/{self.role}"] = json.dumps(
                {
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": self.access_key_id,
                    "SecretAccessKey": self.secret_access_key,
                    "Token": self.session_token,
                    "Expiration": "2099-01-01T00:00:00Z",
                }
            )
        return out


def _handler(metadata: InstanceMetadata) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            metadata.requests.append(f"PUT {self.path}")
            if self.path != "/latest/api/token":
                return self._send(404)
            if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self._send(400, "missing X-aws-ec2-metadata-token-ttl-seconds")
            token = secrets.token_hex(16)
            metadata.tokens.add(token)
            self._send(200, token)

        def do_GET(self) -> None:
            metadata.requests.append(f"GET {self.path}")
            if self.headers.get("X-aws-ec2-metadata-token") not in metadata.tokens:
                return self._send(401)
            prefix = "/latest/meta-data/"
            value = metadata.values().get(self.path[len(prefix) :]) if self.path.startswith(prefix) else None
            self._send(200, value) if value is not None else self._send(404)

    return Handler


class FakeImds:
    """Serves ``metadata`` on 127.0.0.1:<free port> in a thread; use as a context manager."""

    def __init__(self, metadata: InstanceMetadata | None = None) -> None:
        self.metadata = metadata or InstanceMetadata()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.metadata))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeImds:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
