"""Stage ``evaluate``: score the exported ONNX model (the bytes to be served) on the test set.

Writes ``eval/metrics.json`` and plot data for ``dvc plots`` (``eval/plots/*.json``) plus PNG
renderings under ``eval/plots/images/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI runners or cluster nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from example.data import load_split  # noqa: E402
from machinery.errors import UserError, exits_cleanly  # noqa: E402
from machinery.modelcard import CARD_FILENAME, MODEL_FILENAME, read_card, verify_model  # noqa: E402
from machinery.params import load_section  # noqa: E402

MODEL_DIR = Path("models")
EVAL_DIR = Path("eval")
PLOTS_DIR = EVAL_DIR / "plots"
IMAGES_DIR = PLOTS_DIR / "images"


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plot_dpi: int = Field(default=100, ge=30, le=600)


def predict(model_path: Path, input_name: str, X: np.ndarray) -> np.ndarray:
    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise UserError(f"{model_path}: not a loadable ONNX model ({exc})") from None
    labels = session.run(None, {input_name: X.astype(np.float32)})[0]
    return np.asarray(labels, dtype=np.int64)


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, object]:
    per_class = f1_score(y_true, y_pred, average=None, labels=range(len(labels)))
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "f1_macro": round(float(f1_score(y_true, y_pred, average="macro")), 4),
        "f1_per_class": {label: round(float(f), 4) for label, f in zip(labels, per_class)},
        "n_test": int(len(y_true)),
    }


def write_plot_data(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> None:
    PLOTS_DIR.mkdir(parents=True, exist_ok=True)
    confusion = [{"actual": labels[a], "predicted": labels[p]} for a, p in zip(y_true, y_pred)]
    (PLOTS_DIR / "confusion.json").write_text(json.dumps(confusion) + "\n")
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(labels)), zero_division=0
    )
    rows = [
        {
            "label": label,
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(s),
        }
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    ]
    (PLOTS_DIR / "per_class.json").write_text(json.dumps(rows, indent=1) + "\n")


def render_confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], dpi: int) -> None:
    matrix = confusion_matrix(y_true, y_pred, labels=range(len(labels)))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (test set)")
    fig.tight_layout()
    fig.savefig(IMAGES_DIR / "confusion_matrix.png", dpi=dpi)
    plt.close(fig)


def render_per_class(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], dpi: int) -> None:
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(labels)), zero_division=0
    )
    x = np.arange(len(labels))
    # Constrained layout makes room for a legend outside the axes, so it never covers a bar.
    fig, ax = plt.subplots(figsize=(6.5, 3.5), layout="constrained")
    ax.bar(x - 0.2, precision, width=0.4, label="precision")
    ax.bar(x + 0.2, recall, width=0.4, label="recall")
    ax.set_xticks(x, labels)
    ax.set_ylim(0.0, 1.0)  # from 0: a cut axis makes a small gap look large
    ax.set_xlabel("class")
    ax.set_title("Per-class precision and recall (test set)")
    fig.legend(loc="outside right upper")
    fig.savefig(IMAGES_DIR / "per_class_precision_recall.png", dpi=dpi)
    plt.close(fig)


def evaluate(params: EvaluateParams) -> dict[str, object]:
    card = read_card(MODEL_DIR / CARD_FILENAME)
    model_path = MODEL_DIR / MODEL_FILENAME
    if not model_path.is_file():
        raise UserError(f"{model_path}: not found (run the train stage first)")
    verify_model(model_path, card)
    X, y = load_split("test")
    y_pred = predict(model_path, card.input.name, X)
    metrics = compute_metrics(y, y_pred, card.labels)
    EVAL_DIR.mkdir(parents=True, exist_ok=True)
    (EVAL_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_plot_data(y, y_pred, card.labels)
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    render_confusion(y, y_pred, card.labels, params.plot_dpi)
    render_per_class(y, y_pred, card.labels, params.plot_dpi)
    return metrics


@exits_cleanly
def main() -> None:
    metrics = evaluate(load_section("evaluate", EvaluateParams))
    print(f"evaluate: accuracy {metrics['accuracy']}, macro F1 {metrics['f1_macro']}")


if __name__ == "__main__":
    main()
