"""What a forker writes in ``tests/example/`` for their own model: here, wine and gradient
boosting (the fork test puts this directory in place of the digits example's tests)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from machinery.modelcard import read_card
from tests.support.workspace import Workspace

LABELS = ["barolo", "grignolino", "barbera"]


@pytest.mark.slow
def test_wine_model_meets_its_accuracy_floor(reproduced: Workspace) -> None:
    metrics = json.loads((reproduced.path / "eval/metrics.json").read_text())
    assert metrics["accuracy"] > 0.85 and metrics["f1_macro"] > 0.85


@pytest.mark.slow
def test_wine_card_is_tabular_with_three_cultivars(reproduced: Workspace) -> None:
    card = read_card(reproduced.path / "models/model_card.json")
    assert card.input.shape == [None, 13] and card.preprocessing is None
    assert card.labels == LABELS and card.estimator == "gradient_boosting"


@pytest.mark.slow
def test_wine_onnx_answers_on_the_test_split(reproduced: Workspace) -> None:
    with np.load(reproduced.path / "data/prepared/test.npz") as test:
        X, y = test["X"], test["y"]
    session = ort.InferenceSession(str(reproduced.path / "models/model.onnx"))
    labels, probabilities = session.run(None, {"features": X})
    assert (labels == y).mean() > 0.85
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
