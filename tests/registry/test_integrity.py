"""Stored bytes that no longer match meta.json are refused, and never replace a good file."""

from __future__ import annotations

from pathlib import Path

import pytest

from machinery.registry import IntegrityError, Registry, RegistryError
from machinery.registry.local_store import LocalStore
from machinery.registry.s3_store import S3Store
from tests.registry.helpers import Trained
from tests.registry.helpers import overwrite_raw


def test_tampered_model_bytes_raise_integrity_error_and_leave_dest_alone(
    registry: Registry, trained: tuple[Trained, Trained], tmp_path: Path
) -> None:
    a, b = trained
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    dest = tmp_path / "serve"
    good = registry.download("v1", dest)

    overwrite_raw(registry, "models/v1/model.onnx", b.onnx_bytes)
    with pytest.raises(IntegrityError, match="v1.*sha256"):
        registry.download("v1", dest)
    assert good.read_bytes() == a.onnx_bytes
    assert sorted(p.name for p in dest.iterdir()) == sorted(["model.onnx", "model_card.json"])


def test_truncated_model_is_refused(
    registry: Registry, trained: tuple[Trained, Trained], tmp_path: Path
) -> None:
    a, _ = trained
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    overwrite_raw(registry, "models/v1/model.onnx", a.onnx_bytes[:100])
    with pytest.raises(IntegrityError):
        registry.download("v1", tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "model.onnx").exists()


def test_missing_model_file_under_a_listed_tag(
    registry: Registry, trained: tuple[Trained, Trained], tmp_path: Path
) -> None:
    a, _ = trained
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    store = registry.store
    if isinstance(store, LocalStore):
        (store.root / "models" / "v1" / "model.onnx").unlink()
    else:
        assert isinstance(store, S3Store)
        store.client.delete_object(Bucket=store.bucket, Key=f"{store.prefix}/models/v1/model.onnx")
    with pytest.raises(IntegrityError, match="missing"):
        registry.download("v1", tmp_path)


def test_corrupt_meta_json_is_one_readable_error(
    registry: Registry, trained: tuple[Trained, Trained]
) -> None:
    a, _ = trained
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    overwrite_raw(registry, "models/v1/meta.json", b'{"tag": "v1"}')
    with pytest.raises(RegistryError, match="not a valid meta.json") as err:
        registry.meta("v1")
    assert "\n" not in str(err.value)
