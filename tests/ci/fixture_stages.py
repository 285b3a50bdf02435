"""The stages of the CI tests' small DVC project (``python -m tests.ci.fixture_stages STAGE``).

The pipeline tests run the real ``.gitlab-ci.yml`` on a copy of this repository whose
``dvc.yaml`` is this tiny pipeline instead of the example's: train (offloaded to Slurm) fits the
template's fixture model, evaluate scores it on its held-out rows. Seconds, not minutes, and
independent of whatever a fork puts in ``src/example``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from tests.support.fixture_models import Estimator, build_fixture_model


def _estimator() -> Estimator:
    estimator = yaml.safe_load(Path("params.yaml").read_text())["train"]["estimator"]
    if estimator not in ("logreg", "tree"):
        sys.exit(f"error: params.yaml: train.estimator: {estimator!r} is not logreg or tree")
    return estimator  # type: ignore[no-any-return]


def check() -> None:
    """train's params only (``mlops offload --check``): nothing is fitted."""
    print(f"train: params ok ({_estimator()})")


def train() -> None:
    build_fixture_model(Path("models"), kind="image", estimator=_estimator())


def evaluate() -> None:
    import onnxruntime as ort
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    with tempfile.TemporaryDirectory() as tmp:  # the same fixed data: its held-out rows
        fixture = build_fixture_model(Path(tmp), kind="image", estimator=_estimator())
    session = ort.InferenceSession("models/model.onnx", providers=["CPUExecutionProvider"])
    predicted = session.run(None, {"x": fixture.test_x.astype(np.float32)})[0]
    labels = fixture.labels
    actual = fixture.test_y
    p, r, f, s = precision_recall_fscore_support(actual, predicted, labels=labels, zero_division=0)
    plots = Path("eval/plots")
    (plots / "images").mkdir(parents=True, exist_ok=True)
    metrics = {"accuracy": round(float(accuracy_score(actual, predicted)), 4)}
    Path("eval/metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    per_class = [
        {
            "label": lab,
            "precision": round(float(pi), 4),
            "recall": round(float(ri), 4),
            "f1": round(float(fi), 4),
            "support": int(si),
        }
        for lab, pi, ri, fi, si in zip(labels, p, r, f, s)
    ]
    (plots / "per_class.json").write_text(json.dumps(per_class, indent=2) + "\n")
    pairs = [{"actual": str(a), "predicted": str(b)} for a, b in zip(actual, predicted)]
    (plots / "confusion.json").write_text(json.dumps(pairs) + "\n")
    matrix = confusion_matrix(actual, predicted, labels=labels).astype(float)
    scaled = (255 - 255 * matrix / max(matrix.max(), 1)).astype(np.uint8)
    Image.fromarray(scaled).resize((90, 90), Image.Resampling.NEAREST).save(
        plots / "images" / "confusion.png"
    )


if __name__ == "__main__":
    {"train": train, "check": check, "evaluate": evaluate}[sys.argv[1]]()
