"""Service fixtures: two genuinely different fixture models of the template's own (one picture
kind, two estimators; ``tests/support/fixture_models.py``), published in a real registry (a local
directory; the S3 tests use the real S3 server), and the real app built by its own factory and
container. Nothing here knows what ``src/example`` trains: a fork's tests pass unchanged."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from machinery.registry import Registry
from service.main import create_app
from service.settings import Settings
from tests.support.fixture_models import SIDE, FixtureModel, build_fixture_model

TAG_A = "exp-a"  # image fixture, logistic regression
TAG_B = "exp-b"  # image fixture, decision tree
ALIAS = "prod"
PREDICT_TOKEN = "predict-" + secrets.token_urlsafe(16)
ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(16)
# Row width of the image fixtures (their card's input), for module-level request bodies.
N_FEATURES = SIDE * SIDE
ZERO_ROW = {"instances": [[0.0] * N_FEATURES]}


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PREDICT = bearer(PREDICT_TOKEN)
ADMIN = bearer(ADMIN_TOKEN)


@dataclass(frozen=True)
class Trained:
    """The two image fixture models behind TAG_A and TAG_B; both were fitted on the same data,
    so their held-out rows (``test_x``, ``test_y``) and pictures (``image(i)``) are shared."""

    model_a: FixtureModel
    model_b: FixtureModel

    @property
    def a(self) -> Path:
        return self.model_a.model_dir

    @property
    def b(self) -> Path:
        return self.model_b.model_dir

    @property
    def test_x(self) -> np.ndarray:
        return self.model_a.test_x

    @property
    def test_y(self) -> np.ndarray:
        return self.model_a.test_y

    @property
    def labels(self) -> list[str]:
        return self.model_a.labels

    @property
    def n_features(self) -> int:
        return self.model_a.n_features

    def image(self, index: int, size: int = 24, fmt: str = "PNG") -> bytes:
        return self.model_a.image(index, size=size, fmt=fmt)

    def rows(self, n: int) -> list[list[float]]:
        """``n`` held-out rows (repeated as needed) as a JSON ``instances`` list."""
        reps = -(-n // len(self.test_x))
        rows: list[list[float]] = np.tile(self.test_x, (reps, 1))[:n].tolist()
        return rows


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("service-models")
    return Trained(
        build_fixture_model(root / "a", kind="image", estimator="logreg"),
        build_fixture_model(root / "b", kind="image", estimator="tree"),
    )


@pytest.fixture(scope="session")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> FixtureModel:
    """A model whose card has no preprocessing: it takes JSON rows only."""
    return build_fixture_model(tmp_path_factory.mktemp("service-tabular"), kind="tabular")


def publish_both(registry: Registry, trained: Trained, alias_tag: str = TAG_A) -> None:
    registry.publish(TAG_A, trained.a, metrics={"accuracy": 0.96})
    registry.publish(TAG_B, trained.b, metrics={"accuracy": 0.9})
    registry.move_alias(ALIAS, alias_tag, by="test-setup")


@pytest.fixture
def registry_dir(tmp_path: Path, trained: Trained) -> Path:
    """A local-directory registry holding both tags, alias ``prod`` → TAG_A."""
    root = tmp_path / "registry"
    publish_both(Registry.from_url(str(root)), trained)
    return root


def settings_for(registry_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "registry_url": registry_url,
        "model_alias": ALIAS,
        "model_cache_dir": tmp_path / "cache",
        "alias_poll_seconds": 0,
        "predict_token_sha256": sha256_hex(PREDICT_TOKEN),
        "admin_token_sha256": sha256_hex(ADMIN_TOKEN),
    }
    values.update(overrides)
    return Settings(**values)


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(registry_dir: Path, tmp_path: Path) -> AppFactory:
    def make(**overrides: Any) -> FastAPI:
        return create_app(settings_for(str(registry_dir), tmp_path, **overrides))

    return make


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as c:
        yield c
