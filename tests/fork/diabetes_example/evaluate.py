from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score  # noqa: E402

from machinery.modelcard import read_card  # noqa: E402


def main() -> None:
    card = read_card(Path("models/model_card.json"))
    with np.load("data/prepared/test.npz") as d:
        X, y = d["X"], d["y"]
    pred = ort.InferenceSession("models/model.onnx").run(None, {card.input.name: X})[0].ravel()
    plots = Path("eval/plots")
    (plots / "images").mkdir(parents=True, exist_ok=True)
    metrics = {
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)),
        "n_test": len(y),
    }
    Path("eval/metrics.json").write_text(json.dumps(metrics))
    (plots / "predictions.json").write_text(
        json.dumps([{"actual": float(a), "predicted": float(p)} for a, p in zip(y, pred)])
    )
    (plots / "residuals.json").write_text(
        json.dumps([{"predicted": float(p), "residual": float(a - p)} for a, p in zip(y, pred)])
    )
    # The same two plots as PNGs, for the report and the PR comment.
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(y, pred, s=8)
    low, high = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual (test set)")
    fig.tight_layout()
    fig.savefig(plots / "images" / "predicted_vs_actual.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(pred, y - pred, s=8)
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    ax.set_title("Residuals (test set)")
    fig.tight_layout()
    fig.savefig(plots / "images" / "residuals.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
