"""The example's stages: each estimator family exports to ONNX with scikit-learn's answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from example import data, train
from machinery.modelcard import read_card, sha256_file
from tests.support.workspace import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    data.prepare(data.DataParams.model_validate(PARAMS["data"]))
    return tmp_path


def test_data_split_is_deterministic_and_versioned(tmp_path: Path) -> None:
    params = data.DataParams.model_validate(PARAMS["data"])
    first = data.prepare(params, tmp_path / "a")
    again = data.prepare(params, tmp_path / "b")
    other = data.prepare(params.model_copy(update={"seed": params.seed + 1}), tmp_path / "c")
    assert first == again != other


@pytest.mark.parametrize("estimator", ["svc", "logreg", "random_forest"])
def test_onnx_export_matches_sklearn(prepared: Path, estimator: str) -> None:
    params = train.TrainParams.model_validate(PARAMS["train"] | {"estimator": estimator})
    card = train.train(params)
    X_test, y_test = data.load_split("test")
    pipeline = train.build_estimator(params).fit(*data.load_split("train"))

    session = ort.InferenceSession(str(prepared / "models/model.onnx"))
    labels, probabilities = session.run(None, {card.input.name: X_test})
    np.testing.assert_array_equal(labels, pipeline.predict(X_test))
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(X_test), atol=1e-4)
    assert (labels == y_test).mean() >= 0.9

    on_disk = read_card(prepared / "models/model_card.json")
    assert on_disk == card
    assert on_disk.onnx_sha256 == sha256_file(prepared / "models/model.onnx")
    assert on_disk.params["estimator"] == estimator
    assert on_disk.reference is not None
    assert abs(sum(on_disk.reference.class_frequencies) - 1) < 1e-3


def test_same_params_give_the_same_model_bytes(prepared: Path) -> None:
    params = train.TrainParams.model_validate(PARAMS["train"])
    first = train.train(params).onnx_sha256
    assert train.train(params).onnx_sha256 == first
