"""An estimator that does not export fails in one line naming it and the converter's reason:
never skl2onnx's attribute dump, and a non-zero exit from a stage that exports."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading

from machinery import export
from machinery.export import ExportError, to_onnx


def test_an_estimator_without_a_converter_is_one_line() -> None:
    X, y = load_iris(return_X_y=True)
    estimator = make_pipeline(StandardScaler(), LabelSpreading()).fit(X, y)
    with pytest.raises(ExportError) as caught:
        to_onnx(estimator, 4)
    message = str(caught.value)
    assert message.startswith(
        "cannot export Pipeline(StandardScaler → LabelSpreading) to ONNX: MissingShapeCalculator:"
    )
    assert "\n" not in message and len(message) < 300


def test_a_converter_failure_deep_inside_is_its_root_cause_not_the_dump(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's case: without the shim, skl2onnx wraps protobuf's one-line refusal in a
    ValueError whose message is the whole tree (~40,000 lines)."""
    monkeypatch.setattr(export, "_bool_attributes_as_ints", contextlib.nullcontext)
    X, y = load_breast_cancer(return_X_y=True)
    estimator = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    with pytest.raises(ExportError) as caught:
        to_onnx(estimator, X.shape[1])
    assert str(caught.value) == (
        "cannot export HistGradientBoostingClassifier to ONNX: TypeError: Field"
        " onnx.AttributeProto.ints: Expected an int, got a boolean."
    )


def test_neither_classifier_nor_regressor_is_refused() -> None:
    scaler = StandardScaler().fit(np.eye(3))
    with pytest.raises(ExportError, match="StandardScaler is neither a classifier nor a regressor"):
        to_onnx(scaler, 3)


def test_a_stage_that_exports_exits_non_zero_with_one_line() -> None:
    script = textwrap.dedent("""
        from sklearn.datasets import load_iris
        from sklearn.semi_supervised import LabelSpreading
        from machinery.errors import exits_cleanly
        from machinery.export import to_onnx

        @exits_cleanly
        def main():
            X, y = load_iris(return_X_y=True)
            to_onnx(LabelSpreading().fit(X, y), 4)

        main()
        """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot export LabelSpreading"), lines
