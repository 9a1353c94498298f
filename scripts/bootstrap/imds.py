#!/usr/bin/env python3
"""EC2 instance metadata (IMDSv2) client. Standard library only.

IMDSv2 only: a session token from ``PUT /latest/api/token``, then the token on every read. The
endpoint comes from IMDS_ENDPOINT (or the SDKs' AWS_EC2_METADATA_SERVICE_ENDPOINT) so tests can
point it at loopback.

CLI (for shell callers): ``imds.py public-ipv4`` prints the instance's public IPv4 (``instance-id``
its id), or nothing when it has none or IMDS does not answer (exit 0 either way: callers use it for
messages only).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sigv4 import Credentials

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_SECONDS = "300"  # noqa: S105 (a lifetime, not a secret)


class ImdsError(Exception):
    """IMDS unreachable or the instance lacks what was asked (role, region); the message says why."""


def endpoint_from_env() -> str:
    endpoint = (
        os.environ.get("IMDS_ENDPOINT")
        or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        or DEFAULT_ENDPOINT
    ).rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise ImdsError(f"IMDS_ENDPOINT must be an http:// URL, got {endpoint!r}")
    return endpoint


@dataclass
class Imds:
    endpoint: str
    timeout: float = 2.0
    attempts: int = 3
    _token: str | None = None

    def _unreachable(self, reason: object) -> ImdsError:
        return ImdsError(
            f"cannot reach the instance metadata service at {self.endpoint} ({reason}). On EC2, "
            "check that the metadata endpoint is enabled and IMDSv2 tokens are allowed "
            "(aws ec2 modify-instance-metadata-options --http-endpoint enabled). Off EC2, set "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and AWS_REGION instead."
        )

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        """Returns (status, body); retries connection errors because IMDS can lag at first boot."""
        last: object = None
        for attempt in range(self.attempts):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode(errors="replace")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = getattr(exc, "reason", exc)
                if attempt + 1 < self.attempts:
                    time.sleep(attempt + 1)
        raise self._unreachable(last)

    def token(self) -> str:
        if self._token is None:
            request = urllib.request.Request(  # noqa: S310 (http scheme checked in endpoint_from_env)
                f"{self.endpoint}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL_SECONDS},
            )
            status, body = self._open(request)
            if status != 200 or not body:
                raise self._unreachable(f"token request answered HTTP {status}")
            self._token = body
        return self._token

    def get(self, path: str) -> str | None:
        """Returns the value at /latest/meta-data/<path>, or None when IMDS says 404."""
        request = urllib.request.Request(  # noqa: S310 (http scheme checked in endpoint_from_env)
            f"{self.endpoint}/latest/meta-data/{path}",
            headers={"X-aws-ec2-metadata-token": self.token()},
        )
        status, body = self._open(request)
        if status == 404:
            return None
        if status != 200:
            raise ImdsError(f"instance metadata {path} answered HTTP {status}")
        return body.strip()

    def region(self) -> str:
        region = self.get("placement/region")
        if not region:
            raise ImdsError("instance metadata has no placement/region; set AWS_REGION")
        return region

    def role_credentials(self) -> Credentials:
        roles = self.get("iam/security-credentials/")
        if not roles:
            raise ImdsError(
                "this instance has no IAM role: attach an instance profile whose role may "
                "secretsmanager:GetSecretValue on the platform's secret (see README 'Deploy on EC2')"
            )
        role = roles.splitlines()[0].strip()
        raw = self.get(f"iam/security-credentials/{role}")
        try:
            data = json.loads(raw or "")
        except json.JSONDecodeError as exc:
            raise ImdsError(f"credentials of role {role} are not JSON ({exc})") from exc
        if data.get("Code") != "Success" or not data.get("AccessKeyId"):
            raise ImdsError(f"role {role} has no usable credentials (Code={data.get('Code')!r})")
        return Credentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"))


def main(argv: list[str]) -> int:
    if argv not in (["public-ipv4"], ["instance-id"]):
        print("usage: imds.py public-ipv4|instance-id", file=sys.stderr)
        return 2
    try:
        print(Imds(endpoint_from_env(), attempts=1).get(argv[0]) or "")
    except ImdsError:
        print("")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
