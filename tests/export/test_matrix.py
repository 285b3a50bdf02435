"""The estimators teams bring export to ONNX and answer as scikit-learn does.

Each estimator is fitted on scikit-learn's bundled data (nothing downloaded), exported with
``machinery.export.to_onnx`` (what a train stage calls) and run in ONNX Runtime on held-out
rows. Stated tolerances, float32 ONNX against scikit-learn's float64:

- classifiers: the same label on every test row, probabilities within 1e-5 (absolute);
- regressors: values within 1e-5 relative + 1e-5 absolute (diabetes targets are 25..346).

Measured here (scikit-learn 1.9.1, skl2onnx 1.20.0, onnx 1.23.2, onnxruntime): largest
probability difference 4.4e-7 (SVC), largest value difference 3.5e-5 (random forest), relative
2.3e-7.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

from machinery.export import task_of, to_onnx

PROBABILITY_ATOL = 1e-5
VALUE_RTOL = VALUE_ATOL = 1e-5

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def split(loader: Callable[..., Any]) -> Split:
    X, y = loader(return_X_y=True)
    parts = train_test_split(X.astype(np.float32), y, test_size=0.25, random_state=0)
    return parts[0], parts[1], parts[2], parts[3]


def scaled(estimator: Any) -> Any:
    return make_pipeline(StandardScaler(), estimator)


CLASSIFIERS: dict[str, tuple[Callable[[], Any], Callable[..., Any]]] = {
    "LogisticRegression": (lambda: scaled(LogisticRegression(max_iter=1000)), load_breast_cancer),
    "SVC": (lambda: scaled(SVC(probability=True, random_state=0)), load_breast_cancer),
    "RandomForestClassifier": (
        lambda: RandomForestClassifier(n_estimators=30, random_state=0),
        load_breast_cancer,
    ),
    "GradientBoostingClassifier": (
        lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
        load_breast_cancer,
    ),
    "HistGradientBoostingClassifier": (
        lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
        load_breast_cancer,
    ),
    "HistGradientBoostingClassifier-multiclass": (
        lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0),
        load_wine,
    ),
    "MLPClassifier": (
        lambda: scaled(MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=0)),
        load_breast_cancer,
    ),
}

REGRESSORS: dict[str, Callable[[], Any]] = {
    "Ridge": lambda: scaled(Ridge()),
    "RandomForestRegressor": lambda: RandomForestRegressor(n_estimators=30, random_state=0),
    "GradientBoostingRegressor": lambda: GradientBoostingRegressor(n_estimators=30, random_state=0),
    "HistGradientBoostingRegressor": lambda: HistGradientBoostingRegressor(
        max_iter=50, random_state=0
    ),
    "SVR": lambda: scaled(SVR()),
    "MLPRegressor": lambda: scaled(
        MLPRegressor(hidden_layer_sizes=(32,), max_iter=2000, random_state=0)
    ),
}


def fitted(estimator: Any, X: np.ndarray, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        # Convergence and deprecation notices of the fit are not what this test is about.
        warnings.simplefilter("ignore")
        return estimator.fit(X, y)


def session(estimator: Any, n_features: int) -> ort.InferenceSession:
    model = to_onnx(estimator, n_features)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_exports_and_answers_as_scikit_learn(name: str) -> None:
    make, loader = CLASSIFIERS[name]
    X_train, X_test, y_train, _ = split(loader)
    estimator = fitted(make(), X_train, y_train)
    assert task_of(estimator) == "classification"
    labels, probabilities = session(estimator, X_train.shape[1]).run(
        ["label", "probabilities"], {"input": X_test}
    )
    np.testing.assert_array_equal(labels, estimator.predict(X_test))
    np.testing.assert_allclose(
        probabilities, estimator.predict_proba(X_test), rtol=0, atol=PROBABILITY_ATOL
    )


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressor_exports_and_answers_as_scikit_learn(name: str) -> None:
    X_train, X_test, y_train, _ = split(load_diabetes)
    estimator = fitted(REGRESSORS[name](), X_train, y_train)
    assert task_of(estimator) == "regression"
    [values] = session(estimator, X_train.shape[1]).run(["variable"], {"input": X_test})
    assert values.shape == (len(X_test), 1)
    np.testing.assert_allclose(
        values.ravel(), estimator.predict(X_test), rtol=VALUE_RTOL, atol=VALUE_ATOL
    )
