"""Shared by the registry tests: trained model dirs and raw access to the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from machinery.registry import Registry
from machinery.registry.local_store import LocalStore
from machinery.registry.s3_store import S3Store


@dataclass(frozen=True)
class Trained:
    """A train stage's output directory and the metrics published with it."""

    model_dir: Path
    metrics: dict[str, float]

    @property
    def onnx_bytes(self) -> bytes:
        return (self.model_dir / "model.onnx").read_bytes()


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
