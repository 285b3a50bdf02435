"""Shared by the registry tests: trained model dirs, S3 env, raw access to the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from machinery.registry import Registry
from machinery.registry.local_store import LocalStore
from machinery.registry.s3_store import S3Store
from tests.support.s3 import S3Server

# Boto3 must see only the test server's settings, never a developer's profile or ~/.aws.
_FOREIGN_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION")


@dataclass(frozen=True)
class Trained:
    """A train stage's output directory and the metrics published with it."""

    model_dir: Path
    metrics: dict[str, float]

    @property
    def onnx_bytes(self) -> bytes:
        return (self.model_dir / "model.onnx").read_bytes()


def use_s3_env(monkeypatch: pytest.MonkeyPatch, server: S3Server, tmp_path: Path) -> None:
    for name in _FOREIGN_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)


def overwrite_raw(registry: Registry, key: str, data: bytes) -> None:
    store = registry.store
    if isinstance(store, LocalStore):
        path = store.root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    elif isinstance(store, S3Store):
        store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", Body=data)
    else:  # pragma: no cover - only two stores exist
        raise TypeError(type(store))
