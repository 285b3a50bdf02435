"""Fixture models of the template's own tests, built from a fixed tiny pipeline of their own.

The template's tests (registry, service, report, offload, CI, k8s) must pass unchanged whatever a
fork puts in ``src/example/``, so they never train the example or read its ``params.yaml``. This
module makes small, deterministic models with their own cards instead:

- ``kind="image"``: 6×6 grayscale pictures of three shapes (labels ``bar``, ``dash``, ``dot``),
  dark ink on a light background as a user would upload them; the card inverts and scales to
  0..1, so the model's input is 36 float32 features;
- ``kind="tabular"``: 5 numeric features, three labels (``low``, ``mid``, ``high``), no
  preprocessing (the service then takes JSON rows only);
- ``build_regression_model``: ridge regression on scikit-learn's bundled diabetes data (10
  features, nothing downloaded), a ``task: regression`` card with no labels.

Two estimators (``logreg`` and ``tree``) give two genuinely different ONNX files of one kind.
The same arguments always give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier

from machinery.modelcard import (
    MODEL_FILENAME,
    ImagePreprocessing,
    ModelCard,
    Reference,
    TensorSpec,
    ValueOutput,
    feature_statistics,
    library_versions,
    sha256_file,
    value_statistics,
    write_card,
)

Kind = Literal["image", "tabular"]
Estimator = Literal["logreg", "tree"]

SIDE = 6
IMAGE_LABELS = ["bar", "dash", "dot"]
TABULAR_LABELS = ["low", "mid", "high"]
N_TABULAR = 5
INPUT_NAME = "x"
SEED = 7
ESTIMATOR_FILENAME = "estimator.joblib"
CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)
INTENSITY_BINS = [round(float(x), 6) for x in np.linspace(0.0, 1.0, 11)]


@dataclass(frozen=True)
class FixtureModel:
    """A model directory (``model.onnx`` + ``model_card.json``) and held-out rows it was not
    fitted on. ``test_x`` rows are what the model takes (after the card's preprocessing);
    ``test_y`` are label strings."""

    model_dir: Path
    kind: Kind
    estimator: Estimator
    test_x: np.ndarray
    test_y: np.ndarray
    card: ModelCard

    @property
    def onnx_bytes(self) -> bytes:
        return (self.model_dir / MODEL_FILENAME).read_bytes()

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    @property
    def n_features(self) -> int:
        return self.card.n_features

    def image(self, index: int, size: int = 24, fmt: str = "PNG") -> bytes:
        """Test row ``index`` as the picture a user uploads (image kind only)."""
        if self.kind != "image":
            raise ValueError("a tabular fixture model takes no images")
        return ink_picture(self.test_x[index], size=size, fmt=fmt)


def ink_picture(row: np.ndarray, size: int = 24, fmt: str = "PNG") -> bytes:
    """Render a 0..1 ink-high row of the image fixture as dark ink on light, upscaled."""
    ink = np.asarray(row, dtype=np.float32).reshape(SIDE, SIDE)
    pixels = np.round(255.0 * (1.0 - ink)).astype(np.uint8)
    picture = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return buffer.getvalue()


def _shapes(rng: np.random.Generator, n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Ink-high 6×6 pictures: a vertical bar, a horizontal dash, a dot, at random places.

    Ink is exactly 0 or 1 so the rows survive the round trip through an 8-bit PNG and the
    card's preprocessing unchanged."""
    rows, labels = [], []
    for label in IMAGE_LABELS:
        for _ in range(n_per_class):
            canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
            a, b = (int(v) for v in rng.integers(0, SIDE - 2, size=2))
            if label == "bar":
                canvas[a : a + 3, b] = 1.0
            elif label == "dash":
                canvas[a, b : b + 3] = 1.0
            else:
                canvas[a, b] = 1.0
            rows.append(canvas.reshape(-1))
            labels.append(label)
    return np.stack(rows), np.array(labels)


def _tabular(rng: np.random.Generator, n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for centre, label in zip((-2.0, 0.0, 2.0), TABULAR_LABELS):
        rows.append(rng.normal(centre, 0.6, size=(n_per_class, N_TABULAR)))
        labels.extend([label] * n_per_class)
    return np.concatenate(rows).astype(np.float32), np.array(labels)


def _estimator(estimator: Estimator) -> ClassifierMixin:
    if estimator == "logreg":
        return LogisticRegression(C=1.0, max_iter=500, random_state=SEED)
    return DecisionTreeClassifier(max_depth=6, random_state=SEED)


def _reference(X: np.ndarray, y: np.ndarray, labels: list[str], kind: Kind) -> Reference:
    classes = np.array([np.mean(y == label) for label in labels])
    if kind != "image":
        # A tabular card's input-drift signal: per-feature PSI against these statistics.
        feature_bins, feature_frequencies = feature_statistics(X)
        return Reference(
            class_frequencies=[round(float(f), 6) for f in classes],
            feature_names=[f"x{i}" for i in range(X.shape[1])],
            feature_bins=feature_bins,
            feature_frequencies=feature_frequencies,
        )
    intensity, _ = np.histogram(X.mean(axis=1), bins=INTENSITY_BINS)
    return Reference(
        class_frequencies=[round(float(f), 6) for f in classes],
        intensity_bins=INTENSITY_BINS,
        intensity_frequencies=[round(float(f), 6) for f in intensity / len(y)],
    )


def build_fixture_model(
    dest: Path,
    *,
    kind: Kind = "image",
    estimator: Estimator = "logreg",
    keep_fitted: bool = False,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> FixtureModel:
    """Fit the fixed tiny pipeline and write ``dest/model.onnx`` and ``dest/model_card.json``;
    ``keep_fitted`` also writes the scikit-learn estimator itself (``dest/estimator.joblib``),
    for the benchmark's MLServer peer only: the service never reads a pickle."""
    rng = np.random.default_rng(SEED)
    if kind == "image":
        X, y = _shapes(rng, 40)
        labels = IMAGE_LABELS
    else:
        X, y = _tabular(rng, 40)
        labels = TABULAR_LABELS
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    n_test = len(y) // 4
    train_x, train_y, test_x, test_y = X[n_test:], y[n_test:], X[:n_test], y[:n_test]
    if extra is not None:  # new labelled rows (tests/retrain/shift_stage.py): train on them too
        train_x = np.concatenate([train_x, extra[0].astype(train_x.dtype)])
        train_y = np.concatenate([train_y, extra[1].astype(train_y.dtype)])

    clf = _estimator(estimator).fit(train_x, train_y)
    # The ONNX graph's class order must be the card's label order.
    assert [str(c) for c in clf.classes_] == sorted(labels)
    labels = [str(c) for c in clf.classes_]
    dest.mkdir(parents=True, exist_ok=True)
    onx = to_onnx(
        clf,
        initial_types=[(INPUT_NAME, FloatTensorType([None, X.shape[1]]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model_path = dest / MODEL_FILENAME
    model_path.write_bytes(onx.SerializeToString())
    if keep_fitted:
        import joblib

        joblib.dump(clf, dest / ESTIMATOR_FILENAME)
    preprocessing = (
        ImagePreprocessing(
            grayscale=True,
            width=SIDE,
            height=SIDE,
            invert=True,
            scale_min=0.0,
            scale_max=1.0,
            resample="nearest",
        )
        if kind == "image"
        else None
    )
    card = ModelCard(
        task="classification",
        name=f"fixture-{kind}",
        estimator=estimator,
        input=TensorSpec(name=INPUT_NAME, shape=[None, int(X.shape[1])], dtype="float32"),
        preprocessing=preprocessing,
        labels=labels,
        params={"estimator": estimator, "seed": SEED},
        data_version=f"fixture-{kind}-v1",
        code_commit="0" * 40,
        library_versions=library_versions("scikit-learn", "skl2onnx", "onnx", "onnxruntime"),
        onnx_sha256=sha256_file(model_path),
        created=CREATED,
        reference=_reference(train_x, train_y, labels, kind),
    )
    write_card(card, dest)
    return FixtureModel(dest, kind, estimator, test_x, test_y, card)


@dataclass(frozen=True)
class RegressionFixture:
    """A regression model directory, its scikit-learn estimator (the reference its ONNX
    answers must equal) and held-out rows it was not fitted on."""

    model_dir: Path
    estimator: Ridge
    test_x: np.ndarray
    test_y: np.ndarray
    card: ModelCard

    def expected(self, rows: np.ndarray) -> np.ndarray:
        """What scikit-learn predicts for ``rows``: the service must answer the same."""
        return np.asarray(self.estimator.predict(np.asarray(rows, dtype=np.float32)))


def build_regression_model(dest: Path) -> RegressionFixture:
    """Fit ridge regression on the bundled diabetes data; write ``dest/model.onnx`` and a
    ``task: regression`` card whose reference holds the training predictions' deciles."""
    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    order = np.random.default_rng(SEED).permutation(len(y))
    X, y = X[order], y[order]
    n_test = len(y) // 4
    train_x, train_y, test_x, test_y = X[n_test:], y[n_test:], X[:n_test], y[:n_test]
    ridge = Ridge(alpha=0.1).fit(train_x, train_y)
    dest.mkdir(parents=True, exist_ok=True)
    onx = to_onnx(
        ridge,
        initial_types=[(INPUT_NAME, FloatTensorType([None, X.shape[1]]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model_path = dest / MODEL_FILENAME
    model_path.write_bytes(onx.SerializeToString())
    output_bins, output_frequencies = value_statistics(ridge.predict(train_x))
    feature_bins, feature_frequencies = feature_statistics(train_x)
    card = ModelCard(
        task="regression",
        name="fixture-regression",
        estimator="ridge",
        input=TensorSpec(name=INPUT_NAME, shape=[None, int(X.shape[1])], dtype="float32"),
        output=ValueOutput(name=onx.graph.output[0].name, shape=[None, 1], dtype="float32"),
        params={"estimator": "ridge", "alpha": 0.1},
        data_version="fixture-diabetes-v1",
        code_commit="0" * 40,
        library_versions=library_versions("scikit-learn", "skl2onnx", "onnx", "onnxruntime"),
        onnx_sha256=sha256_file(model_path),
        created=CREATED,
        reference=Reference(
            output_bins=output_bins,
            output_frequencies=output_frequencies,
            feature_names=[f"x{i}" for i in range(X.shape[1])],
            feature_bins=feature_bins,
            feature_frequencies=feature_frequencies,
        ),
    )
    write_card(card, dest)
    return RegressionFixture(dest, ridge, test_x, test_y, card)
