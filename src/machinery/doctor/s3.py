"""The DVC remote and the model registry bucket: reachable, keys valid, a probe object written
and deleted, endpoint and region consistent. boto3 with short timeouts and one attempt."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from machinery.doctor.model import Check, Env, Failed, NotConfigured, Row, ok

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 3.0
# What a hostname of AWS says about its region: s3.eu-west-1.amazonaws.com, s3-eu-west-1…
_AWS_REGION = re.compile(
    r"(?:^|\.)s3[.-](?:dualstack\.)?([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com$"
)
_KEYS = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"


def _region(env: Env) -> str:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""


def _client(env: Env) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=_region(env) or "us-east-1",
    )
    return session.client(
        "s3",
        endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        config=Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            # total_max_attempts counts the first try; max_attempts would count retries only.
            retries={"total_max_attempts": 1, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _split(url: str, var: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise Failed(f"{var}={url!r} is not s3://BUCKET/PATH", f"set {var} to s3://BUCKET/PATH")
    return parts.netloc, parts.path.strip("/")


def _endpoint_region(env: Env) -> None:
    """An AWS endpoint names its region; the client's region must be the same."""
    endpoint = env.get("AWS_ENDPOINT_URL", "")
    m = _AWS_REGION.search(urlsplit(endpoint).hostname or "") if endpoint else None
    region = _region(env)
    if m and region and m.group(1) != region:
        raise Failed(
            f"AWS_ENDPOINT_URL is in {m.group(1)} but the region is {region}",
            f"set AWS_DEFAULT_REGION={m.group(1)} (or the endpoint of {region})",
        )


def _why(exc: Exception, bucket: str, endpoint: str, var: str) -> Failed:
    """One botocore failure as a Failed naming the variable to fix."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return Failed(
            f"cannot reach the S3 endpoint {endpoint}", "check AWS_ENDPOINT_URL (host and port)"
        )
    if isinstance(exc, ReadTimeoutError):
        return Failed(
            f"{endpoint} did not answer in {READ_TIMEOUT:.0f} s", "check AWS_ENDPOINT_URL"
        )
    if isinstance(exc, NoCredentialsError):
        return Failed("no S3 credentials", f"set {_KEYS}")
    if not isinstance(exc, ClientError):
        return Failed(f"S3 call failed: {type(exc).__name__}", f"check {var} and AWS_ENDPOINT_URL")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
        return Failed(f"S3 rejected the credentials ({code})", f"set valid {_KEYS}")
    if code in ("NoSuchBucket", "404"):
        return Failed(
            f"bucket {bucket!r} does not exist at {endpoint}",
            f"create the bucket, or fix the bucket in {var}",
        )
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
        actual = headers.get("x-amz-bucket-region") or str(error.get("Region", "")) or "another"
        return Failed(
            f"bucket {bucket!r} is in region {actual}, not the configured one",
            f"set AWS_DEFAULT_REGION={actual}",
        )
    if code in ("AccessDenied", "403", "Forbidden"):
        return Failed(f"access denied to bucket {bucket!r}", f"grant the key of {_KEYS} access")
    return Failed(f"S3 answered {code or 'an error'}", f"check {var} and {_KEYS}")


def probe_bucket(env: Env, var: str) -> str:
    """List, write, delete and re-check a probe object under the prefix of ``env[var]``."""
    from botocore.exceptions import BotoCoreError, ClientError

    url = env.get(var, "")
    bucket, prefix = _split(url, var)
    if not env.get("AWS_ACCESS_KEY_ID") or not env.get("AWS_SECRET_ACCESS_KEY"):
        raise Failed(f"{var} is set but the S3 keys are not", f"set {_KEYS}")
    _endpoint_region(env)
    endpoint = env.get("AWS_ENDPOINT_URL") or "AWS S3"
    client = _client(env)
    key = f"{prefix}/.mlops-doctor-{secrets.token_hex(6)}".lstrip("/")
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except (BotoCoreError, ClientError) as exc:
        raise _why(exc, bucket, endpoint, var) from None
    actual = listed.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    if actual and _region(env) and actual != _region(env):
        raise Failed(
            f"bucket {bucket!r} is in {actual}, the client region is {_region(env)}",
            f"set AWS_DEFAULT_REGION={actual}",
        )
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"mlops doctor probe\n")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("AccessDenied", "403"):
            raise Failed(
                f"the key may read bucket {bucket!r} but not write it (AccessDenied)",
                f"give the key of {_KEYS} write and delete access to s3://{bucket}/{prefix}",
            ) from None
        raise _why(exc, bucket, endpoint, var) from None
    except BotoCoreError as exc:
        raise _why(exc, bucket, endpoint, var) from None
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError):
        raise Failed(
            f"the key may write s3://{bucket}/{key} but not delete it (probe left there)",
            f"give the key of {_KEYS} delete access, then remove that object",
        ) from None
    return f"s3://{bucket}/{prefix} at {endpoint}: listed, probe object written and deleted"


def _bucket_check(name: str, var: str, what: str) -> Check:
    def run(env: Env) -> list[Row]:
        url = env.get(var, "")
        if not url:
            raise NotConfigured(f"{var} not set ({what})")
        if not url.startswith("s3://"):
            raise NotConfigured(f"{var} is not an s3:// URL: only S3 is checked")
        return [ok(name, probe_bucket(env, var))]

    return Check(name, 10.0, run)


CHECKS = [
    _bucket_check("S3: DVC remote", "DVC_REMOTE_URL", "every job then runs every stage"),
    _bucket_check("S3: model registry", "MLOPS_REGISTRY_URL", "needed on main to publish"),
]
