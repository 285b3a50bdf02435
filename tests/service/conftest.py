"""Service fixtures: two genuinely different models from the example's real stages, published
in a real registry (a local directory; the S3 tests use the real S3 server), and the real app
built by its own factory and container."""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from machinery.registry import Registry
from service.main import create_app
from service.settings import Settings
from tests.support.models import train_example

TAG_A = "exp-logreg"
TAG_B = "exp-forest"
ALIAS = "prod"
PREDICT_TOKEN = "predict-" + secrets.token_urlsafe(16)
ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(16)


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PREDICT = bearer(PREDICT_TOKEN)
ADMIN = bearer(ADMIN_TOKEN)


@dataclass(frozen=True)
class Trained:
    a: Path  # model dir of TAG_A (logreg)
    b: Path  # model dir of TAG_B (random forest)
    test_x: np.ndarray
    test_y: np.ndarray


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("service-models")
    a = train_example(root / "logreg", "logreg")
    b = train_example(root / "forest", "random_forest")
    test = np.load(a / "data/prepared/test.npz")
    return Trained(a / "models", b / "models", test["X"], test["y"])


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


def digit_png(row: np.ndarray, size: int = 32, fmt: str = "PNG") -> bytes:
    """Render a digits row (0..16, ink high) as the dark-on-light picture a user uploads."""
    pixels = (255 - np.asarray(row, dtype=np.float32).reshape(8, 8) * (255 / 16)).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
