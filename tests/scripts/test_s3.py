"""scripts/lib/s3.py and the backup's upload, against moto's S3 on loopback (real HTTP, real SigV4
signing; moto checks the request shapes, not the signatures). Credentials come from the environment
or from a fake IMDSv2 instance role, as on EC2."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from scripts.lib import backup, s3
from scripts.lib.s3 import S3, S3Error, parse_uri
from tests.scripts.bootstrap.fake_imds import FakeImds, InstanceMetadata

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> object:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    return boto3.client(
        "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t"
    )


@pytest.fixture
def bucket(aws) -> str:  # type: ignore[no-untyped-def]
    name = f"backups-{uuid.uuid4().hex[:10]}"
    aws.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture
def env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTBACKUPS00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_REGION", REGION)


class Settings:
    """What backup.upload reads from the stack: its settings."""

    def __init__(self, **values: str) -> None:
        self.values = values

    def setting(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


def archive(tmp_path: Path, size: int, name: str = "demo-backup-20261125T050000Z.tar.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def test_upload_is_encrypted_at_rest_and_complete(
    aws, bucket: str, env_credentials: None, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = archive(tmp_path, 200_000)
    uri = backup.upload(Settings(), path, f"s3://{bucket}/prefect-platform/")  # type: ignore[arg-type]
    assert uri == f"s3://{bucket}/prefect-platform/{path.name}"
    head = aws.head_object(Bucket=bucket, Key=f"prefect-platform/{path.name}")
    assert head["ServerSideEncryption"] == "AES256"
    body = aws.get_object(Bucket=bucket, Key=f"prefect-platform/{path.name}")["Body"].read()
    assert body == path.read_bytes()


def test_upload_with_a_kms_key_uses_sse_kms(
    aws, bucket: str, env_credentials: None, tmp_path: Path, endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    kms = boto3.client(
        "kms", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t"
    )
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    path = archive(tmp_path, 1000)
    backup.upload(Settings(BACKUP_S3_KMS_KEY_ID=key_id), path, f"s3://{bucket}/kms")  # type: ignore[arg-type]
    head = aws.head_object(Bucket=bucket, Key=f"kms/{path.name}")
    assert head["ServerSideEncryption"] == "aws:kms" and key_id in head["SSEKMSKeyId"]


def test_big_archives_go_up_in_parts(
    aws, bucket: str, env_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(s3, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    path = archive(tmp_path, 11 * 1024 * 1024 + 123)
    backup.upload(Settings(), path, f"s3://{bucket}/big/")  # type: ignore[arg-type]
    head = aws.head_object(Bucket=bucket, Key=f"big/{path.name}")
    assert head["ContentLength"] == path.stat().st_size
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["ServerSideEncryption"] == "AES256"
    assert aws.get_object(Bucket=bucket, Key=f"big/{path.name}")["Body"].read() == path.read_bytes()
    assert not aws.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_instance_role_credentials_from_imds(
    aws, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    metadata = InstanceMetadata(region=REGION)
    with FakeImds(metadata) as imds:
        monkeypatch.setenv("IMDS_ENDPOINT", imds.endpoint)
        path = archive(tmp_path, 1000)
        backup.upload(Settings(), path, f"s3://{bucket}/role/")  # type: ignore[arg-type]
    assert any("iam/security-credentials" in request for request in metadata.requests)
    assert aws.head_object(Bucket=bucket, Key=f"role/{path.name}")["ContentLength"] == 1000


def test_download_and_listing_for_restore(aws, bucket: str, env_credentials: None, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for stamp in ("20261123T050000Z", "20261125T050000Z", "20261124T050000Z"):
        aws.put_object(Bucket=bucket, Key=f"pp/demo-backup-{stamp}.tar.gz", Body=stamp.encode())
    aws.put_object(Bucket=bucket, Key="elsewhere/demo-backup-20991231T000000Z.tar.gz", Body=b"x")
    client = S3.for_bucket(bucket)
    assert sorted(client.keys("pp/"))[-1] == "pp/demo-backup-20261125T050000Z.tar.gz"
    dest = tmp_path / "got.tar.gz"
    client.download("pp/demo-backup-20261124T050000Z.tar.gz", dest)
    assert dest.read_bytes() == b"20261124T050000Z"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


def test_a_missing_bucket_or_object_says_so(aws, env_credentials: None, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(S3Error, match=r"HTTP 404 NoSuchBucket"):
        S3.for_bucket("no-such-bucket-here").upload(archive(tmp_path, 10), "k")
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("uri", ["s3:/bucket", "https://bucket/x", "s3://Upper/x", "s3://b/with space"])
def test_bad_uris_are_refused_before_any_work(uri: str) -> None:
    with pytest.raises(S3Error, match="not an S3 URI"):
        parse_uri(uri)


def test_no_credentials_anywhere_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMDS_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: not on EC2
    with pytest.raises(S3Error, match="AWS_ACCESS_KEY_ID"):
        S3.for_bucket("bucket")


def test_restore_fetches_the_newest_archive_of_this_project(
    aws, bucket: str, env_credentials: None, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from scripts.lib.restore import fetch
    from scripts.lib.stack import Stack

    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=demo\nBACKUP_DIR=restored\n")
    for key in (
        "pp/demo-backup-20261124T050000Z.tar.gz",
        "pp/demo-backup-20261125T050000Z.tar.gz",
        "pp/other-backup-20261126T050000Z.tar.gz",  # another stack's, newer
        "pp/notes.txt",
    ):
        aws.put_object(Bucket=bucket, Key=key, Body=key.encode())
    got = fetch(Stack(root=tmp_path), f"s3://{bucket}/pp/")
    assert got == tmp_path / "restored" / "demo-backup-20261125T050000Z.tar.gz"
    assert got.read_bytes() == b"pp/demo-backup-20261125T050000Z.tar.gz"
    named = fetch(Stack(root=tmp_path), f"s3://{bucket}/pp/demo-backup-20261124T050000Z.tar.gz")
    assert named.read_bytes() == b"pp/demo-backup-20261124T050000Z.tar.gz"
