"""The stdlib SigV4 signer produces the same Authorization header as botocore's."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tests.support import REPO

sys.path.insert(0, str(REPO / "scripts" / "bootstrap"))
from sigv4 import Credentials, sign

NOW = datetime(2026, 11, 23, 12, 30, 45, tzinfo=UTC)
BODY = b'{"SecretId": "prefect-platform/prod"}'
HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "secretsmanager.GetSecretValue",
}


def botocore_authorization(monkeypatch: pytest.MonkeyPatch, url: str, creds: Credentials, region: str) -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: NOW.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=url, data=BODY, headers=dict(HEADERS))
    boto_creds = BotoCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
    botocore.auth.SigV4Auth(boto_creds, "secretsmanager", region).add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("https://secretsmanager.eu-west-1.amazonaws.com/", None),
        ("https://secretsmanager.eu-west-1.amazonaws.com/", "IQoJb3JpZ2luX2VjEXAMPLE/token+=="),
        ("http://127.0.0.1:41234/", "session-token"),
    ],
)
def test_signature_matches_botocore(monkeypatch: pytest.MonkeyPatch, url: str, token: str | None) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = sign("POST", url, HEADERS, BODY, creds, "eu-west-1", "secretsmanager", now=NOW)
    assert ours["Authorization"] == botocore_authorization(monkeypatch, url, creds, "eu-west-1")
    assert ours["X-Amz-Date"] == "20261123T123045Z"
    assert ours.get("X-Amz-Security-Token") == token


def test_signature_covers_body_and_region() -> None:
    creds = Credentials("AKIDEXAMPLE", "secret")
    url = "https://secretsmanager.eu-west-1.amazonaws.com/"
    base = sign("POST", url, HEADERS, BODY, creds, "eu-west-1", "secretsmanager", now=NOW)["Authorization"]
    other_body = sign("POST", url, HEADERS, b"{}", creds, "eu-west-1", "secretsmanager", now=NOW)
    other_region = sign("POST", url, HEADERS, BODY, creds, "us-east-1", "secretsmanager", now=NOW)
    assert other_body["Authorization"] != base
    assert other_region["Authorization"] != base


def test_credentials_repr_hides_the_secret_key() -> None:
    assert "wJalr" not in repr(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI"))
