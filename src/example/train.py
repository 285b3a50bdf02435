"""Stage ``train``: fit the estimator chosen in ``params.yaml`` ``train:`` and export it to ONNX.

Writes ``models/model.onnx`` and ``models/model_card.json``: the two files the registry and
the inference service read. Preprocessing lives inside the scikit-learn pipeline, so it is
inside the ONNX graph too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from example.data import load_data_version, load_split
from machinery.errors import exits_cleanly
from machinery.export import to_onnx
from machinery.modelcard import (
    MODEL_FILENAME,
    ImagePreprocessing,
    ModelCard,
    Reference,
    TensorSpec,
    code_commit,
    feature_statistics,
    library_versions,
    now_utc,
    sha256_file,
    write_card,
    write_onnx,
)
from machinery.params import load_section

OUT_DIR = Path("models")
INPUT_NAME = "input"
N_FEATURES = 64
# How an uploaded picture becomes a digits row: 8×8 grayscale, ink high, 0..16.
PREPROCESSING = ImagePreprocessing(
    grayscale=True, width=8, height=8, invert=True, scale_min=0.0, scale_max=16.0
)
INTENSITY_BINS = [float(x) for x in np.linspace(0.0, 16.0, 17)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SVCParams(_Section):
    C: float = Field(gt=0)
    gamma: float | Literal["scale", "auto"] = "scale"


class LogRegParams(_Section):
    C: float = Field(gt=0)
    max_iter: int = Field(gt=0)


class RandomForestParams(_Section):
    n_estimators: int = Field(gt=0)
    max_depth: int | None = Field(default=None, gt=0)


class TrainParams(_Section):
    seed: int
    estimator: Literal["svc", "logreg", "random_forest"]
    svc: SVCParams
    logreg: LogRegParams
    random_forest: RandomForestParams

    def chosen(self) -> _Section:
        section: _Section = getattr(self, self.estimator)
        return section


def build_estimator(params: TrainParams) -> Pipeline:
    clf: ClassifierMixin
    if params.estimator == "svc":
        # Calibrated on held-out folds: scikit-learn 1.9 deprecates SVC(probability=True).
        clf = CalibratedClassifierCV(
            SVC(C=params.svc.C, gamma=params.svc.gamma, random_state=params.seed),
            ensemble=False,
        )
    elif params.estimator == "logreg":
        clf = LogisticRegression(
            C=params.logreg.C, max_iter=params.logreg.max_iter, random_state=params.seed
        )
    else:
        clf = RandomForestClassifier(
            n_estimators=params.random_forest.n_estimators,
            max_depth=params.random_forest.max_depth,
            random_state=params.seed,
            n_jobs=1,
        )
        # Trees need no scaling, and a float32 scaler in ONNX would move samples across
        # split thresholds: ONNX and scikit-learn agree exactly only on the raw inputs.
        return Pipeline([("clf", clf)])
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def export_onnx(pipeline: Pipeline, path: Path) -> None:
    write_onnx(to_onnx(pipeline, N_FEATURES, input_name=INPUT_NAME), path)


def reference_stats(X: np.ndarray, y: np.ndarray, n_classes: int) -> Reference:
    classes = np.bincount(y, minlength=n_classes) / len(y)
    intensity, _ = np.histogram(X.mean(axis=1), bins=INTENSITY_BINS)
    feature_bins, feature_frequencies = feature_statistics(X)  # per-feature input drift
    return Reference(
        class_frequencies=[round(float(f), 6) for f in classes],
        intensity_bins=INTENSITY_BINS,
        intensity_frequencies=[round(float(f), 6) for f in intensity / len(y)],
        feature_bins=feature_bins,
        feature_frequencies=feature_frequencies,
    )


def train(params: TrainParams, out_dir: Path = OUT_DIR) -> ModelCard:
    X, y = load_split("train")
    # Threaded BLAS reductions can round differently under load; one thread gives the same
    # bytes for the same data and params on a laptop, a CI runner or a cluster node.
    with threadpool_limits(limits=1):
        pipeline = build_estimator(params).fit(X, y)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILENAME
    export_onnx(pipeline, model_path)
    labels = [str(c) for c in pipeline.classes_]
    card = ModelCard(
        task="classification",
        name="digits-classifier",
        estimator=params.estimator,
        input=TensorSpec(name=INPUT_NAME, shape=[None, N_FEATURES], dtype="float32"),
        preprocessing=PREPROCESSING,
        labels=labels,
        params={
            "seed": params.seed,
            "estimator": params.estimator,
            **params.chosen().model_dump(),
        },
        data_version=load_data_version(),
        code_commit=code_commit(),
        library_versions=library_versions(
            "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"
        ),
        onnx_sha256=sha256_file(model_path),
        created=now_utc(),
        reference=reference_stats(X, y, len(labels)),
    )
    write_card(card, out_dir)
    return card


@exits_cleanly
def main() -> None:
    params = load_section("train", TrainParams)
    if "--check" in sys.argv[1:]:
        # Params only, nothing fitted: the offload runs this before it submits a cluster job.
        print(f"train: params ok ({params.estimator})")
        return
    card = train(params)
    print(f"train: {card.estimator} → {OUT_DIR / MODEL_FILENAME} (sha256 {card.onnx_sha256[:12]})")


if __name__ == "__main__":
    main()
