"""Registry fixtures: two genuinely different models from the example pipeline, and a registry
on each store (a local directory and the real S3 server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from machinery.registry import Registry
from tests.conftest import REPO
from tests.registry.helpers import Trained, use_s3_env
from tests.support.s3 import S3Server


def _train(workdir: Path, estimator: str) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["estimator"] = estimator
    # Small forests keep the session fast; the bytes still differ from logreg's.
    params["train"]["random_forest"].update(n_estimators=10, max_depth=6)
    workdir.mkdir(parents=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("example.data", "example.train"):
        subprocess.run([sys.executable, "-m", stage], cwd=workdir, check=True, capture_output=True)
    return workdir / "models"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trained, Trained]:
    """Two models from the real example stages (logreg and a random forest)."""
    root = tmp_path_factory.mktemp("trained")
    a = Trained(_train(root / "logreg", "logreg"), {"accuracy": 0.95, "macro_f1": 0.949})
    b = Trained(_train(root / "forest", "random_forest"), {"accuracy": 0.91, "macro_f1": 0.905})
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
        return str(tmp_path / "registry")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    use_s3_env(monkeypatch, server, tmp_path)
    return f"s3://{bucket}/team/registry"


@pytest.fixture
def registry(registry_url: str) -> Registry:
    return Registry.from_url(registry_url)
