"""What a forker writes in ``tests/example/`` for a regression model: diabetes and ridge (the
regression fork test puts this directory in place of the digits example's tests)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from machinery.modelcard import ValueOutput, read_card
from tests.support.workspace import Workspace


@pytest.mark.slow
def test_diabetes_model_beats_predicting_the_mean(reproduced: Workspace) -> None:
    metrics = json.loads((reproduced.path / "eval/metrics.json").read_text())
    assert metrics["r2"] > 0.3 and metrics["rmse"] < 65


@pytest.mark.slow
def test_diabetes_card_is_a_regression_without_labels(reproduced: Workspace) -> None:
    card = read_card(reproduced.path / "models/model_card.json")
    assert card.task == "regression" and card.labels == []
    assert isinstance(card.output, ValueOutput) and card.output.shape == [None, 1]
    assert card.input.shape == [None, 10] and card.preprocessing is None


@pytest.mark.slow
def test_diabetes_onnx_answers_on_the_test_split(reproduced: Workspace) -> None:
    with np.load(reproduced.path / "data/prepared/test.npz") as test:
        X, y = test["X"], test["y"]
    session = ort.InferenceSession(str(reproduced.path / "models/model.onnx"))
    [values] = session.run(None, {"features": X})
    assert values.shape == (len(y), 1)
    assert np.corrcoef(values.ravel(), y)[0, 1] > 0.5
