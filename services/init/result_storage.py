"""Where flow results persist: the data volume, or S3 when RESULTS_S3_URI is set.

With ``RESULTS_S3_URI=s3://bucket/prefix`` the init saves prefect-aws's ``S3Bucket`` block
``platform-results`` (that bucket and folder) and makes it the server's default result storage
(``PUT /api/admin/storage``). Prefect's client asks the server for that default whenever a run has
no storage of its own (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK unset), so every flow run, on any pool,
persists its results there, and the dbt build copies its artifacts there too
(flows/dbt_outputs.py), with no setting to pass to the runs. Without it the server default is
cleared and results go to PREFECT_LOCAL_STORAGE_PATH, /data/results on the data volume, as before.

The block holds no secret: its AwsCredentials are empty, so each flow run's boto3 uses its default
chain, the EC2 instance role (no keys on the host), or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_REGION (and AWS_ENDPOINT_URL_S3 for an S3-compatible store) from .env, which the worker passes
to every run. prefect-aws is imported only when the setting is on.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from services.init import log

BLOCK_NAME = "platform-results"
# S3's bucket naming rules (lower case, 3-63 characters, no leading or trailing dot or hyphen).
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ResultStorageError(ValueError):
    """RESULTS_S3_URI is malformed; the message says how to write it."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise ResultStorageError(
            f"RESULTS_S3_URI must look like s3://my-bucket/prefect-results/, got {uri!r}"
        )
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not BUCKET.match(bucket) or ".." in bucket:
        raise ResultStorageError(
            f"RESULTS_S3_URI names the bucket {bucket!r}, which is not a valid S3 bucket name "
            "(3-63 lower-case letters, digits, dots and hyphens): e.g. s3://my-bucket/prefect-results/"
        )
    return bucket, prefix.strip("/")


def _current_default(client: Any) -> Any:
    return client.read_server_default_result_storage().default_result_storage_block_id


def use_s3(client: Any, bucket: str, prefix: str) -> Any:
    """Saves the S3Bucket block and makes it the server's default result storage; its document id."""
    from prefect_aws import AwsCredentials
    from prefect_aws.s3 import S3Bucket

    block = S3Bucket(bucket_name=bucket, bucket_folder=prefix, credentials=AwsCredentials())
    block_id = block.save(BLOCK_NAME, overwrite=True)
    if _current_default(client) != block_id:
        client.update_server_default_result_storage(block_id)
    log(f"result storage: s3://{bucket}/{prefix + '/' if prefix else ''} (block s3-bucket/{BLOCK_NAME})")
    return block_id


def use_data_volume(client: Any) -> None:
    """Clears the server default if it is this platform's block; results go to the data volume."""
    current = _current_default(client)
    if current is not None:
        block = client.read_block_document(current)
        if block.name != BLOCK_NAME:
            log(f"result storage: the server default is block {block.name!r}, not the platform's: kept")
            return
        client.clear_server_default_result_storage()
    log("result storage: the data volume (/data/results); RESULTS_S3_URI is empty")


def ensure_result_storage(client: Any) -> None:
    """The server's default result storage matches RESULTS_S3_URI; a malformed value stops the init."""
    uri = os.environ.get("RESULTS_S3_URI", "").strip()
    if not uri:
        use_data_volume(client)
        return
    try:
        bucket, prefix = parse_s3_uri(uri)
    except ResultStorageError as exc:
        sys.exit(f"prefect-init: {exc}")
    use_s3(client, bucket, prefix)
