"""The few S3 calls the backups need, over HTTPS with SigV4. Standard library only (Python 3.9+).

Hosts without the AWS CLI or boto3 (Debian, Ubuntu) must still ship their backups off the host, so
this signs requests itself (scripts/bootstrap/sigv4.py, shared with the secrets bootstrap).
Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) from the environment,
else the EC2 instance role through IMDSv2. Region: AWS_REGION / AWS_DEFAULT_REGION, else the
instance's. AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) points it at another endpoint (path-style),
as the AWS SDKs do. Every object is written with server-side encryption: SSE-S3 (AES256), or
SSE-KMS with BACKUP_S3_KMS_KEY_ID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote
from xml.etree import ElementTree  # S3's own answers, over TLS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bootstrap"))
from imds import Imds, ImdsError, endpoint_from_env
from sigv4 import Credentials, sign

# Parts of a multipart upload: held in memory one at a time (a 2 GiB host), 10,000 at most (160 GiB).
PART_SIZE = 16 * 1024 * 1024
URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>[A-Za-z0-9!_.*'()/=+-]*))?$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(Exception):
    """An S3 call failed; the message names the call, the answer and the likely fix."""


def parse_uri(uri: str) -> tuple[str, str]:
    """s3://bucket[/key-or-prefix] -> (bucket, key-or-prefix)."""
    match = URI.match(uri.strip())
    if not match:
        raise S3Error(
            f"{uri!r} is not an S3 URI like s3://my-bucket/prefect-platform/ (lower-case bucket name; "
            "keys of letters, digits and !_.*'()/=+-)"
        )
    return match.group("bucket"), match.group("key") or ""


def credentials_and_region(imds: Imds | None = None) -> tuple[Credentials, str]:
    env = os.environ
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        credentials = Credentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
        )
        if region:
            return credentials, region
    else:
        credentials = None  # type: ignore[assignment]
    try:
        imds = imds or Imds(endpoint_from_env(), attempts=2)
        return credentials or imds.role_credentials(), region or imds.region()
    except ImdsError as exc:
        raise S3Error(f"no AWS credentials for the S3 upload: {exc}") from exc


def sse_headers(kms_key_id: str = "") -> dict[str, str]:
    if kms_key_id:
        return {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": kms_key_id,
        }
    return {"x-amz-server-side-encryption": "AES256"}


@dataclass
class S3:
    bucket: str
    credentials: Credentials
    region: str
    endpoint: str = ""  # empty: AWS's own, virtual-hosted
    timeout: float = 120.0

    @classmethod
    def for_bucket(cls, bucket: str) -> S3:
        credentials, region = credentials_and_region()
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        return cls(bucket, credentials, region, endpoint.rstrip("/"))

    def urls(self, key: str, query: str = "") -> tuple[str, str]:
        """(URL to sign, URL to send): the signer encodes the path and query itself, once."""
        if self.endpoint:
            base, path = self.endpoint, f"/{self.bucket}/{key}"
        else:
            base, path = f"https://{self.bucket}.s3.{self.region}.amazonaws.com", f"/{key}"
        pairs = [pair.partition("=") for pair in query.split("&") if pair]
        sent_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, _, v in pairs)
        return (
            base + path + (f"?{query}" if query else ""),
            base + quote(path, safe="/-_.~") + (f"?{sent_query}" if query else ""),
        )

    def request(
        self, method: str, key: str, query: str = "", body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Any:
        to_sign, url = self.urls(key, query)
        sha = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        headers = dict(headers or {})
        if method in ("PUT", "POST"):  # else urllib sends form-urlencoded, which servers may parse
            headers.setdefault("Content-Type", "application/octet-stream")
        signed = sign(
            method,
            to_sign,
            {**headers, "x-amz-content-sha256": sha},
            body,
            self.credentials,
            self.region,
            "s3",
        )
        data = body if method in ("PUT", "POST") else None
        request = urllib.request.Request(url, data=data, method=method, headers=signed)  # noqa: S310
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 - http(s) built above
        except urllib.error.HTTPError as exc:
            answer = exc.read().decode(errors="replace")
            code = re.search(r"<Code>(.*?)</Code>", answer)
            message = re.search(r"<Message>(.*?)</Message>", answer)
            hint = ""
            if exc.code == 403:
                hint = " (the role or keys need s3:PutObject, s3:GetObject and s3:ListBucket on the bucket"
                hint += ", and kms:GenerateDataKey/kms:Decrypt with SSE-KMS)"
            raise S3Error(
                f"S3 {method} s3://{self.bucket}/{key} answered HTTP {exc.code} "
                f"{code.group(1) if code else ''}: {message.group(1) if message else answer[:200]}{hint}"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise S3Error(f"cannot reach S3 at {url}: {getattr(exc, 'reason', exc)}") from None

    def upload(self, path: Path, key: str, kms_key_id: str = "") -> None:
        """Uploads ``path`` to ``key`` with server-side encryption (multipart beyond PART_SIZE)."""
        size = path.stat().st_size
        with path.open("rb") as source:
            if size <= PART_SIZE:
                self.request("PUT", key, body=source.read(), headers=sse_headers(kms_key_id)).close()
                return
            self._multipart(source, key, kms_key_id)

    def _multipart(self, source: IO[bytes], key: str, kms_key_id: str) -> None:
        with self.request("POST", key, "uploads=", headers=sse_headers(kms_key_id)) as answer:
            answer_xml = ElementTree.fromstring(answer.read())  # noqa: S314
        upload_id = answer_xml.findtext(f"{NS}UploadId") or ""
        if not upload_id:
            raise S3Error(f"S3 started no multipart upload for s3://{self.bucket}/{key}")
        try:
            parts = []
            while chunk := source.read(PART_SIZE):
                number = len(parts) + 1
                query = f"partNumber={number}&uploadId={upload_id}"
                with self.request("PUT", key, query, body=chunk) as answer:
                    parts.append((number, answer.headers["ETag"]))
            body = "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts
            )
            xml = f'<CompleteMultipartUpload xmlns="{NS[1:-1]}">{body}</CompleteMultipartUpload>'.encode()
            complete = {"Content-Type": "application/xml"}
            with self.request("POST", key, f"uploadId={upload_id}", body=xml, headers=complete) as answer:
                result = answer.read()
            if b"<Error>" in result:  # S3 may answer 200 with an error body here
                raise S3Error(
                    f"S3 could not complete the upload of s3://{self.bucket}/{key}: {result[:300]!r}"
                )
        except BaseException:
            # If this fails too, the bucket's lifecycle rule cleans up incomplete uploads.
            with contextlib.suppress(S3Error):
                self.request("DELETE", key, f"uploadId={upload_id}").close()
            raise

    def head(self, key: str) -> dict[str, str]:
        with self.request("HEAD", key) as answer:
            return {name.lower(): value for name, value in answer.headers.items()}

    def download(self, key: str, dest: Path) -> None:
        """Writes the object to ``dest`` (mode 0600) through a temporary file."""
        partial = dest.with_name(f".{dest.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, self.request("GET", key) as answer:
                while chunk := answer.read(1 << 20):
                    out.write(chunk)
            os.replace(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""
        found: list[str] = []
        token = ""
        while True:
            query = f"list-type=2&prefix={prefix}" + (f"&continuation-token={token}" if token else "")
            with self.request("GET", "", query) as answer:
                root = ElementTree.fromstring(answer.read())  # noqa: S314
            found += [item.findtext(f"{NS}Key") or "" for item in root.iter(f"{NS}Contents")]
            token = root.findtext(f"{NS}NextContinuationToken") or ""
            if not token:
                return found
