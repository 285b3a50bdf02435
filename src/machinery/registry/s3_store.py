"""The registry on S3 (the DVC remote's bucket), through boto3 and the standard AWS_* env.

Write-once is ``IfNoneMatch='*'`` and compare-and-swap is ``IfMatch=<ETag>``: the server
decides, so two publishers or two alias movers on different machines cannot both win.
Timeouts are short and retries few, so an unreachable S3 is an error in seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from machinery.registry.errors import ObjectTooLarge, RegistryError, RegistryUnavailable
from machinery.registry.store import Blob

if TYPE_CHECKING:  # boto3 costs ~0.7 s of start-up: imported only for an s3:// registry
    from botocore.config import Config

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 15.0
MAX_ATTEMPTS = 2

_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "403",
}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
# 409 is what AWS answers when two conditional writes on one key race each other.
_PRECONDITION_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


class _Missing(Exception):
    pass


class _PreconditionFailed(Exception):
    pass


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        from botocore.config import Config

        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # botocore >= 1.36 adds CRC checksums (aws-chunked trailers) to every upload and
            # validates them on download; several S3-compatible servers reject or mangle that.
            # Only where the API requires one: the registry checks sha256 itself.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # Endpoint, region and keys come from the standard AWS_* environment (AWS_ENDPOINT_URL
        # for MinIO/SeaweedFS), exactly as DVC reads them for the same bucket.
        self.client = client or _make_client(config, f"s3://{bucket}/{self.prefix}".rstrip("/"))

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def create_root(self) -> None:
        """A prefix needs no creating; a missing bucket is reported by the first request."""

    def read(self, key: str) -> Blob | None:
        try:
            with self._errors(key):
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                data = response["Body"].read()
        except _Missing:
            return None
        return Blob(data=data, version=str(response["ETag"]))

    def write(self, key: str, data: bytes, *, expect: str | None) -> bool:
        condition = {"IfNoneMatch": "*"} if expect is None else {"IfMatch": expect}
        try:
            with self._errors(key):
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, **condition
                )
        except (_PreconditionFailed, _Missing):
            # IfMatch on a key deleted meanwhile answers 404 on some servers: same meaning.
            return False
        return True

    def put_file_once(self, key: str, path: Path, sha256: str) -> bool:
        try:
            with self._errors(key), path.open("rb") as fh:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=fh,
                    IfNoneMatch="*",
                    Metadata={"sha256": sha256},
                )
        except _PreconditionFailed:
            return False
        return True

    def stored_sha256(self, key: str) -> str | None:
        """Hash the stored bytes themselves: object metadata could be stale after tampering."""
        try:
            with self._errors(key):
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                digest = hashlib.sha256()
                for chunk in response["Body"].iter_chunks(1 << 20):
                    digest.update(chunk)
        except _Missing:
            return None
        return digest.hexdigest()

    def fetch_file(self, key: str, dest: Path, max_bytes: int | None = None) -> bool:
        try:
            with self._errors(key):
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                size = int(response.get("ContentLength", 0))
                if max_bytes is not None and size > max_bytes:
                    response["Body"].close()  # the headers said enough: read no body
                    raise ObjectTooLarge(key, size, max_bytes)
                with dest.open("wb") as fh:
                    for chunk in response["Body"].iter_chunks(1 << 20):
                        fh.write(chunk)
        except _Missing:
            return False
        return True

    def children(self, prefix: str) -> list[str]:
        base = "/".join(part for part in (self.prefix, prefix.strip("/")) if part)
        base = f"{base}/" if base else ""
        names: set[str] = set()
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    names.add(common["Prefix"][len(base) :].rstrip("/"))
                for obj in page.get("Contents", []):
                    names.add(obj["Key"][len(base) :])
        return sorted(n for n in names if n)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Turn boto3's exceptions into the registry's one-line errors."""
        where = f"{self.location}/{key}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING_CODES:
                raise _Missing() from None
            if code in _PRECONDITION_CODES or status == 412:
                raise _PreconditionFailed() from None
            if code == "NoSuchBucket":
                raise RegistryUnavailable(
                    f"registry {self.location}: bucket '{self.bucket}' does not exist "
                    f"at {self.endpoint}"
                ) from None
            if code in _CREDENTIAL_CODES:
                raise RegistryUnavailable(
                    f"registry {self.location}: S3 at {self.endpoint} refused the credentials "
                    f"({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ) from None
            message = str(error.get("Message", "")) or "no message"
            if isinstance(status, int) and status >= 500:
                raise RegistryUnavailable(
                    f"registry {self.location}: S3 at {self.endpoint} failed on {where} "
                    f"({code or status}: {message})"
                ) from None
            raise RegistryError(
                f"registry {self.location}: S3 refused {where} ({code or status}: {message})"
            ) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise RegistryUnavailable(
                f"registry {self.location}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a non-AWS S3)"
            ) from None
        except BotoCoreError as exc:
            # Connection refused, DNS, connect/read timeouts, dropped connections.
            raise RegistryUnavailable(
                f"registry {self.location}: S3 at {self.endpoint} is unreachable "
                f"({_one_line(exc)})"
            ) from None


def _make_client(config: Config, location: str) -> Any:
    import boto3

    try:
        return boto3.session.Session().client("s3", config=config)
    except (BotoCoreError, ValueError) as exc:
        # A misspelt AWS_PROFILE or AWS_ENDPOINT_URL: say which, before any request.
        raise RegistryUnavailable(
            f"registry {location}: cannot set up the S3 client ({_one_line(exc)})"
        ) from None


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
