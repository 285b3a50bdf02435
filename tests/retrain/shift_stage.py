"""The ``train`` stage of the data-shift test's project (``python -m tests.retrain.shift_stage``).

Fits the template's fixture image model on its fixed rows plus every labelled row under
``data/incoming/*.csv`` (36 pixel values, then the label), the directory a ``dvc import-url``
of an S3 prefix fills, and writes the model, its card and ``eval/metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.support.fixture_models import build_fixture_model


def incoming(directory: Path = Path("data/incoming")) -> tuple[np.ndarray, np.ndarray]:
    rows = [
        line.split(",")
        for path in sorted(directory.rglob("*.csv"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    x = np.array([[float(v) for v in row[:-1]] for row in rows], dtype=np.float32)
    y = np.array([row[-1].strip() for row in rows])
    return x.reshape(len(rows), -1), y


def main() -> None:
    x, y = incoming()
    fixture = build_fixture_model(Path("models"), extra=(x, y) if len(y) else None)
    Path("eval").mkdir(exist_ok=True)
    metrics = {"accuracy": 1.0, "n_incoming": int(len(y))}
    Path("eval/metrics.json").write_text(json.dumps(metrics) + "\n")
    print(f"train: {len(y)} incoming rows, model {fixture.card.onnx_sha256[:12]}")


if __name__ == "__main__":
    main()
