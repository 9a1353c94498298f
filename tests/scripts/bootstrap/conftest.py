"""Fixtures for the bootstrap tests: moto's Secrets Manager and a fake IMDSv2, both on loopback.

The container tests run their "EC2 host" with --network host, so the same 127.0.0.1 endpoints
serve the pytest process and the bootstrap running inside the container.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.scripts.bootstrap.fake_imds import FakeImds, InstanceMetadata

REGION = "eu-west-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def secrets_client(moto_endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    with FakeImds(InstanceMetadata(region=REGION)) as server:
        yield server


def create_secret(client, name: str, values: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """Creates (or replaces) a JSON secret in moto; returns its name."""
    with contextlib.suppress(client.exceptions.ResourceNotFoundException):
        client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    client.create_secret(Name=name, SecretString=json.dumps(values))
    return name


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_aws_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any AWS credentials, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "IMDS_ENDPOINT"}
    env.update(extra)
    return env
