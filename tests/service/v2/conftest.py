"""A real ``python -m service`` per fixture model (image and tabular cards), for the real Open
Inference Protocol clients (tritonclient, KServe's REST client) to talk to over TCP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import numpy as np
import pytest

from machinery.registry import Registry
from tests.service.conftest import (
    ADMIN_TOKEN,
    ALIAS,
    PREDICT_TOKEN,
    TAG_A,
    TAG_B,
    Trained,
    publish_both,
    sha256_hex,
)
from tests.support.fixture_models import FixtureModel
from tests.support.service import service_process

TABULAR_TAG = "exp-tab"


@dataclass(frozen=True)
class Served:
    base: str
    host_port: str
    pid: int
    model: FixtureModel
    tag: str
    registry: Path

    def expected(self, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
        """What ONNX Runtime itself answers for ``rows``: labels and probabilities."""
        session = ort.InferenceSession(self.model.onnx_bytes, providers=["CPUExecutionProvider"])
        label, proba = session.run(None, {self.model.card.input.name: rows.astype(np.float32)})
        return [str(v) for v in label.tolist()], np.asarray(proba, dtype=np.float32)


def _env(registry: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "MLOPS_REGISTRY_URL": str(registry),
        "MLOPS_MODEL_ALIAS": ALIAS,
        "MLOPS_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "MLOPS_ALIAS_POLL_SECONDS": "0",
        "MLOPS_PREDICT_TOKEN_SHA256": sha256_hex(PREDICT_TOKEN),
        "MLOPS_ADMIN_TOKEN_SHA256": sha256_hex(ADMIN_TOKEN),
    }


@pytest.fixture
def served_image(trained: Trained, tmp_path: Path) -> Iterator[Served]:
    registry = tmp_path / "registry"
    publish_both(Registry.from_url(str(registry)), trained)
    with service_process(_env(registry, tmp_path), tmp_path) as (base, pid):
        yield Served(base, base.removeprefix("http://"), pid, trained.model_a, TAG_A, registry)


@pytest.fixture
def served_tabular(tabular: FixtureModel, tmp_path: Path) -> Iterator[Served]:
    registry = tmp_path / "registry"
    reg = Registry.from_url(str(registry))
    reg.publish(TABULAR_TAG, tabular.model_dir, metrics={"accuracy": 0.9})
    reg.move_alias(ALIAS, TABULAR_TAG, by="test-setup")
    with service_process(_env(registry, tmp_path), tmp_path) as (base, pid):
        yield Served(base, base.removeprefix("http://"), pid, tabular, TABULAR_TAG, registry)


__all__ = ["Served", "TAG_B", "PREDICT_TOKEN"]
