from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

from machinery.modelcard import read_card  # noqa: E402


def main() -> None:
    card = read_card(Path("models/model_card.json"))
    with np.load("data/prepared/test.npz") as d:
        X, y = d["X"], d["y"]
    pred = ort.InferenceSession("models/model.onnx").run(None, {"features": X})[0]
    plots = Path("eval/plots")
    (plots / "images").mkdir(parents=True, exist_ok=True)
    Path("eval/metrics.json").write_text(
        json.dumps(
            {"accuracy": accuracy_score(y, pred), "f1_macro": f1_score(y, pred, average="macro")}
        )
    )
    names = card.labels
    (plots / "confusion.json").write_text(
        json.dumps([{"actual": names[a], "predicted": names[p]} for a, p in zip(y, pred)])
    )
    per_class = f1_score(y, pred, average=None)
    (plots / "per_class.json").write_text(
        json.dumps([{"label": n, "f1": float(f)} for n, f in zip(names, per_class)])
    )
    fig, ax = plt.subplots()
    ax.bar(names, per_class)
    fig.savefig(plots / "images" / "per_class_f1.png")


if __name__ == "__main__":
    main()
