"""Secrets Manager GetSecretValue over plain HTTPS with SigV4. Standard library only."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sigv4 import Credentials, sign

CREDENTIALS_REJECTED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
}
TRANSIENT = {"ThrottlingException", "InternalServiceError", "ServiceUnavailable", "RequestTimeout"}


class SecretsManagerError(Exception):
    """The secret could not be read; the message names the cause and the fix, never a value."""


def endpoint_for(region: str) -> str:
    override = os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or os.environ.get("AWS_ENDPOINT_URL")
    endpoint = (override or f"https://secretsmanager.{region}.amazonaws.com").rstrip("/") + "/"
    if not endpoint.startswith(("http://", "https://")):
        raise SecretsManagerError(
            f"AWS_ENDPOINT_URL_SECRETS_MANAGER must be an http(s) URL, got {endpoint!r}"
        )
    return endpoint


def _error_of(status: int, raw: str) -> tuple[str, str]:
    """(type, message) of an error answer: JSON from the service, XML from some auth layers."""
    try:
        error = json.loads(raw)
    except json.JSONDecodeError:
        code, message = re.search(r"<Code>(.*?)</Code>", raw), re.search(r"<Message>(.*?)</Message>", raw)
        return (code.group(1) if code else f"HTTP {status}"), (message.group(1) if message else raw[:200])
    error_type = str(error.get("__type", f"HTTP {status}")).rsplit("#", 1)[-1]
    return error_type, str(error.get("message") or error.get("Message") or raw[:200])


def _explain(error_type: str, message: str, secret_id: str, region: str) -> str:
    if error_type == "ResourceNotFoundException":
        return (
            f"secret {secret_id!r} not found in region {region} (ResourceNotFoundException): create it "
            "(aws secretsmanager create-secret --name ... --secret-string file://secrets.json) or fix "
            "SECRET_ID (a name or full ARN, in the instance's region)"
        )
    if error_type in {"AccessDeniedException", "AccessDenied"}:
        return (
            f"not allowed to read secret {secret_id!r} (AccessDeniedException): grant the instance role "
            "secretsmanager:GetSecretValue on the secret's ARN (and kms:Decrypt on its key if it uses "
            "a customer-managed KMS key)"
        )
    if error_type in CREDENTIALS_REJECTED:
        return f"AWS rejected the credentials ({error_type}): {message}"
    if error_type == "DecryptionFailure":
        return f"cannot decrypt secret {secret_id!r}: grant the instance role kms:Decrypt on its KMS key"
    return f"Secrets Manager refused GetSecretValue for {secret_id!r} ({error_type}): {message}"


def get_secret_string(
    secret_id: str,
    region: str,
    credentials: Credentials,
    endpoint: str | None = None,
    attempts: int = 3,
    timeout: float = 10.0,
) -> str:
    url = endpoint or endpoint_for(region)
    body = json.dumps({"SecretId": secret_id}).encode()
    last = "no attempt made"
    for attempt in range(attempts):
        headers = sign(
            "POST",
            url,
            {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "secretsmanager.GetSecretValue",
            },
            body,
            credentials,
            region,
            "secretsmanager",
        )
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            error_type, message = _error_of(exc.code, exc.read().decode(errors="replace"))
            if error_type not in TRANSIENT and exc.code < 500:
                raise SecretsManagerError(_explain(error_type, message, secret_id, region)) from None
            last = f"{error_type}: {message}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = f"cannot reach Secrets Manager at {url} ({getattr(exc, 'reason', exc)})"
        else:
            if "SecretString" not in payload:
                raise SecretsManagerError(
                    f"secret {secret_id!r} holds binary data; store the .env keys as a JSON object string"
                )
            return str(payload["SecretString"])
        if attempt + 1 < attempts:
            time.sleep(2**attempt)
    raise SecretsManagerError(
        f"{last}; giving up after {attempts} attempts. Check the instance's outbound HTTPS "
        "(internet or NAT gateway, or a Secrets Manager VPC endpoint)"
    )
