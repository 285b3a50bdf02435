"""The digits example through DVC: its accuracy floor, its labels and shape, its estimator switch.

These test the example. A fork replaces this directory with tests of its own model.
"""

from __future__ import annotations

import json

import pytest

from machinery.modelcard import read_card
from tests.support.workspace import Workspace


@pytest.mark.slow
def test_digits_pipeline_meets_the_accuracy_floor(reproduced: Workspace) -> None:
    ws = reproduced.path
    metrics = json.loads((ws / "eval/metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95
    assert set(metrics["f1_per_class"]) == {str(d) for d in range(10)}
    confusion = json.loads((ws / "eval/plots/confusion.json").read_text())
    assert len(confusion) == metrics["n_test"]

    card = read_card(ws / "models/model_card.json")
    assert card.input.shape == [None, 64]
    assert card.preprocessing is not None
    assert (card.preprocessing.width, card.preprocessing.height) == (8, 8)
    assert (
        card.data_version
        == json.loads((ws / "data/prepared/data_version.json").read_text())["data_version"]
    )
    assert {"scikit-learn", "skl2onnx", "onnxruntime"} <= set(card.library_versions)


@pytest.mark.slow
def test_changing_a_train_param_reruns_exactly_train_evaluate_report(
    workspace: Workspace,
) -> None:
    workspace.set_param("train.svc.C", 3.0)
    out = workspace.dvc("repro").stdout
    assert workspace.stages_run(out) == ["train", "evaluate", "report"]
