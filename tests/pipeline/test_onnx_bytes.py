"""``modelcard.write_onnx``: the same model gives the same file, whatever order the converter
listed its opset imports in (skl2onnx's order follows Python's string hashing per process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from machinery.modelcard import sha256_file, write_onnx


def test_opset_order_does_not_change_the_bytes(tmp_path: Path) -> None:
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    clf = LogisticRegression().fit(X, [0, 1] * 5)
    model = to_onnx(clf, X[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    assert len(model.opset_import) == 2
    first = write_onnx(model, tmp_path / "a.onnx")

    reversed_order = [(o.domain, o.version) for o in model.opset_import][::-1]
    del model.opset_import[:]
    for domain, version in reversed_order:
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version
    assert write_onnx(model, tmp_path / "b.onnx") == first == sha256_file(tmp_path / "a.onnx")
