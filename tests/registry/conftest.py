"""Registry fixtures: two genuinely different fixture models (never the example's), and a
registry on each store (a local directory and the real S3 server)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from machinery.registry import Registry
from tests.registry.helpers import Trained
from tests.support.fixture_models import build_fixture_model
from tests.support.s3 import S3Server, use_s3_env


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trained, Trained]:
    """Two fixture models of one kind (logreg and a decision tree): different ONNX bytes."""
    root = tmp_path_factory.mktemp("trained")
    a = Trained(
        build_fixture_model(root / "logreg", kind="image", estimator="logreg").model_dir,
        {"accuracy": 0.95, "f1_macro": 0.949},
    )
    b = Trained(
        build_fixture_model(root / "tree", kind="image", estimator="tree").model_dir,
        {"accuracy": 0.91, "f1_macro": 0.905},
    )
    assert a.onnx_bytes != b.onnx_bytes
    return a, b


@pytest.fixture
def copy_of(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """A private copy of a model directory a test may modify."""

    def make(source: Path) -> Path:
        dest = tmp_path / f"copy-{len(list(tmp_path.glob('copy-*')))}"
        shutil.copytree(source, dest)
        return dest

    yield make


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def registry_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A fresh, empty registry URL on each store; for S3 the AWS_* env points at the server."""
    if request.param == "local":
        root = tmp_path / "registry"
        root.mkdir()  # an empty registry; a missing root is a fault (RegistryUnavailable)
        return str(root)
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    use_s3_env(monkeypatch, server, tmp_path)
    return f"s3://{bucket}/team/registry"


@pytest.fixture
def registry(registry_url: str) -> Registry:
    return Registry.from_url(registry_url)
