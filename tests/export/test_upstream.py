"""The converter bugs ``machinery.export`` shims are still there. When one of these tests
fails, upstream fixed the bug: delete the shim it names from ``src/machinery/export.py`` (and
this test); ``test_matrix.py`` then proves the plain converter right."""

from __future__ import annotations

import contextlib

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split

from machinery import export
from machinery.export import ExportError


def test_skl2onnx_still_writes_bools_into_int_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "_bool_attributes_as_ints", contextlib.nullcontext)
    X, y = load_breast_cancer(return_X_y=True)
    estimator = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    try:
        export.to_onnx(estimator, X.shape[1])
    except ExportError as exc:
        assert "Expected an int, got a boolean" in str(exc), exc
    else:
        # skl2onnx writes ints now, or the lock's protobuf accepts bools again (6.33 did).
        pytest.fail("the unshimmed export works: remove _bool_attributes_as_ints")


def test_skl2onnx_still_rounds_hist_gradient_boosting_thresholds_to_nearest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A diabetes test row lies exactly on a float32-rounded-up threshold: unshimmed, ONNX
    sends it the other way than scikit-learn (4.4 off)."""
    monkeypatch.setattr(export, "_exact_hgb_thresholds", contextlib.nullcontext)
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(
        X.astype(np.float32), y, test_size=0.25, random_state=0
    )
    estimator = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(X_train, y_train)
    model = export.to_onnx(estimator, X.shape[1])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    [values] = session.run(None, {"input": X_test})
    worst = float(np.abs(values.ravel() - estimator.predict(X_test)).max())
    assert worst > 1.0, f"upstream fixed HGB thresholds (max diff {worst}): remove the shim"
