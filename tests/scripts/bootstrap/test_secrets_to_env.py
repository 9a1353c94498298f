"""scripts/bootstrap/secrets-to-env against moto's Secrets Manager and a fake IMDSv2 on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.scripts.bootstrap.conftest import REGION, clean_aws_env, closed_port, create_secret
from tests.scripts.bootstrap.fake_imds import FakeImds, InstanceMetadata
from tests.support import REPO

SCRIPT = REPO / "scripts" / "bootstrap" / "secrets-to-env"


def parse_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    return tmp_path


@pytest.fixture
def secret(secrets_client) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    values = {
        "PREFECT_API_AUTH_STRING": f"admin:ui-{uuid.uuid4().hex}",
        "SNOWFLAKE_PASSWORD": f"sf-{uuid.uuid4().hex}",
    }
    return create_secret(secrets_client, f"pp-test/{uuid.uuid4().hex}", values), values


def run(
    workdir: Path, env: dict[str, str], *args: str, secret_id: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--env", str(workdir / ".env")]
    command += ["--example", str(workdir / ".env.example")]
    if secret_id is not None:
        command += ["--secret-id", secret_id]
    return subprocess.run(command + list(args), env=env, capture_output=True, text=True, timeout=60)


def test_writes_env_from_the_secret_with_the_instance_role(
    workdir: Path, imds: FakeImds, moto_endpoint: str, secret: tuple[str, dict[str, str]]
) -> None:
    secret_id, values = secret
    env = clean_aws_env(IMDS_ENDPOINT=imds.endpoint, AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_endpoint)
    result = run(workdir, env, "--set", "PREFECT_BIND_ADDRESS=0.0.0.0", secret_id=secret_id)
    assert result.returncode == 0, result.stderr
    written = parse_env(workdir / ".env")
    assert written["PREFECT_API_AUTH_STRING"] == values["PREFECT_API_AUTH_STRING"]
    assert written["SNOWFLAKE_PASSWORD"] == values["SNOWFLAKE_PASSWORD"]
    assert written["PREFECT_BIND_ADDRESS"] == "0.0.0.0"
    # Not in the secret: generated, never left as the placeholder.
    assert re.fullmatch(r"[0-9a-f]{48}", written["POSTGRES_PASSWORD"])
    assert not [k for k, v in written.items() if "__GENERATE__" in v]
    assert set(parse_env(workdir / ".env.example")) <= set(written)
    assert stat.S_IMODE((workdir / ".env").stat().st_mode) == 0o600
    # IMDSv2: a token first, then region and role credentials read with it.
    assert imds.metadata.requests[0] == "PUT /latest/api/token"
    assert "GET /latest/meta-data/placement/region" in imds.metadata.requests
    # Names may be printed, values never.
    assert "PREFECT_API_AUTH_STRING" in result.stdout
    for value in values.values():
        assert value not in result.stdout + result.stderr
    assert list(workdir.glob(".env.*")) == [workdir / ".env.example"], "a temp file was left behind"


def test_keeps_existing_values_unless_overwrite(
    workdir: Path, imds: FakeImds, moto_endpoint: str, secret: tuple[str, dict[str, str]]
) -> None:
    secret_id, values = secret
    (workdir / ".env").write_text("PREFECT_API_AUTH_STRING=admin:kept\nMY_OWN_SETTING=42\n")
    env = clean_aws_env(IMDS_ENDPOINT=imds.endpoint, AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_endpoint)

    assert run(workdir, env, secret_id=secret_id).returncode == 0
    merged = parse_env(workdir / ".env")
    assert merged["PREFECT_API_AUTH_STRING"] == "admin:kept"
    assert merged["MY_OWN_SETTING"] == "42"
    assert merged["SNOWFLAKE_PASSWORD"] == values["SNOWFLAKE_PASSWORD"]  # missing key added

    before = (workdir / ".env").read_bytes()
    assert run(workdir, env, secret_id=secret_id).returncode == 0
    assert (workdir / ".env").read_bytes() == before, "a second run changed .env"

    assert run(workdir, env, "--overwrite", secret_id=secret_id).returncode == 0
    overwritten = parse_env(workdir / ".env")
    assert overwritten["PREFECT_API_AUTH_STRING"] == values["PREFECT_API_AUTH_STRING"]
    assert overwritten["MY_OWN_SETTING"] == "42"


def test_environment_credentials_need_no_imds(
    workdir: Path, moto_endpoint: str, secret: tuple[str, dict[str, str]]
) -> None:
    secret_id, values = secret
    env = clean_aws_env(
        IMDS_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_endpoint,
        AWS_ACCESS_KEY_ID="AKIAFROMENV",
        AWS_SECRET_ACCESS_KEY="from-env",
        AWS_REGION=REGION,
    )
    result = run(workdir, env, secret_id=secret_id)
    assert result.returncode == 0, result.stderr
    assert parse_env(workdir / ".env")["SNOWFLAKE_PASSWORD"] == values["SNOWFLAKE_PASSWORD"]


@pytest.fixture
def role_less_imds() -> Iterator[FakeImds]:
    with FakeImds(InstanceMetadata(region=REGION, role=None)) as server:
        yield server


@pytest.mark.parametrize("case", ["missing secret", "no instance role", "IMDS unreachable", "not JSON"])
def test_failures_are_clear_and_write_nothing(
    case: str,
    workdir: Path,
    imds: FakeImds,
    role_less_imds: FakeImds,
    moto_endpoint: str,
    secrets_client,  # type: ignore[no-untyped-def]
) -> None:
    secret_id, endpoint = f"pp-test/absent-{uuid.uuid4().hex}", imds.endpoint
    expected = "not found in region eu-west-1 (ResourceNotFoundException)"
    if case == "no instance role":
        secret_id, endpoint, expected = "any", role_less_imds.endpoint, "this instance has no IAM role"
    elif case == "IMDS unreachable":
        endpoint = f"http://127.0.0.1:{closed_port()}"
        expected = "cannot reach the instance metadata service"
    elif case == "not JSON":
        secret_id = create_secret(secrets_client, f"pp-test/{uuid.uuid4().hex}", {})
        secrets_client.put_secret_value(SecretId=secret_id, SecretString="hunter2-bare-password")
        expected = "is not a JSON object"
    env = clean_aws_env(IMDS_ENDPOINT=endpoint, AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_endpoint)

    result = run(workdir, env, secret_id=secret_id)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secrets-to-env: ERROR: "), result.stderr
    assert expected in lines[0] and "Nothing was written" in lines[0]
    assert "hunter2" not in result.stdout + result.stderr
    assert not (workdir / ".env").exists()
    assert sorted(p.name for p in workdir.iterdir()) == [".env.example"]


def test_failure_leaves_an_existing_env_untouched(workdir: Path, imds: FakeImds, moto_endpoint: str) -> None:
    (workdir / ".env").write_text("POSTGRES_PASSWORD=precious\n")
    os.chmod(workdir / ".env", 0o600)
    env = clean_aws_env(IMDS_ENDPOINT=imds.endpoint, AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_endpoint)
    result = run(workdir, env, secret_id="pp-test/absent")
    assert result.returncode == 1
    assert (workdir / ".env").read_text() == "POSTGRES_PASSWORD=precious\n"


def test_empty_secret_id_is_rejected(workdir: Path) -> None:
    result = run(workdir, clean_aws_env(), secret_id=" ")
    assert result.returncode == 2
    assert "--secret-id is empty" in result.stderr


# --- Signatures checked for real: moto with IAM authorization enforced ------------------------


@pytest.fixture(scope="module")
def strict_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto server that verifies SigV4 signatures and IAM policies after the setup calls."""
    port = closed_port()
    env = clean_aws_env(INITIAL_NO_AUTH_ACTION_COUNT="7")
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        admin = {"region_name": REGION, "endpoint_url": endpoint}
        admin |= {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **admin)
        for _ in range(100):
            try:
                iam.create_user(UserName="reader")  # 1
                break
            except Exception:  # the server is still starting
                time.sleep(0.1)
        key = iam.create_access_key(UserName="reader")["AccessKey"]  # 2
        iam.create_user(UserName="nobody")  # 3
        nobody = iam.create_access_key(UserName="nobody")["AccessKey"]  # 4
        sm = boto3.client("secretsmanager", **admin)
        sm.create_secret(Name="pp/strict", SecretString=json.dumps({"SNOWFLAKE_PASSWORD": "s"}))  # 5
        # moto authorizes non-S3 actions against Resource "*" only, so this policy cannot be
        # scoped to the secret's ARN as the README's is; the action check is what is tested.
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))  # 6
        iam.put_user_policy(  # 7: allowed nothing useful
            UserName="nobody",
            PolicyName="none",
            PolicyDocument=json.dumps(
                {**policy, "Statement": [{**policy["Statement"][0], "Action": "s3:*"}]}
            ),
        )
        yield {
            "endpoint": endpoint,
            "reader_id": key["AccessKeyId"],
            "reader_secret": key["SecretAccessKey"],
            "nobody_id": nobody["AccessKeyId"],
            "nobody_secret": nobody["SecretAccessKey"],
        }
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("reader", None),
        ("tampered", "AWS rejected the credentials"),
        ("nobody", "grant the instance role secretsmanager:GetSecretValue"),
    ],
)
def test_moto_verifies_our_signature_and_policy(
    workdir: Path, strict_moto: dict[str, str], who: str, expected: str | None
) -> None:
    key_id = strict_moto["nobody_id" if who == "nobody" else "reader_id"]
    secret_key = strict_moto["nobody_secret" if who == "nobody" else "reader_secret"]
    if who == "tampered":
        secret_key = secret_key[:-1] + ("A" if secret_key[-1] != "A" else "B")
    env = clean_aws_env(
        AWS_ENDPOINT_URL_SECRETS_MANAGER=strict_moto["endpoint"],
        AWS_ACCESS_KEY_ID=key_id,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_REGION=REGION,
    )
    result = run(workdir, env, secret_id="pp/strict")
    if expected is None:
        assert result.returncode == 0, result.stderr
        assert parse_env(workdir / ".env")["SNOWFLAKE_PASSWORD"] == "s"
    else:
        assert result.returncode == 1
        assert expected in result.stderr
        assert not (workdir / ".env").exists()
