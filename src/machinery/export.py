"""Export a fitted scikit-learn estimator (or pipeline) to ONNX, or fail in one line.

A train stage calls ``to_onnx(estimator, n_features)`` and writes the result with
``machinery.modelcard.write_onnx``. Classifiers get two outputs, ``label`` and
``probabilities`` (no ZipMap: a plain tensor the service reads); regressors one, ``variable``.
A converter failure becomes an ``ExportError`` naming the estimator and the converter's reason,
never skl2onnx's multi-thousand-line attribute dump.

Two bugs of skl2onnx 1.20.0's HistGradientBoosting converter are shimmed here, only while
converting:

- it writes Python ``bool`` values into integer attributes (the leaves'
  ``nodes_missing_value_tracks_true``) and protobuf 7 refuses them (``TypeError: Field
  onnx.AttributeProto.ints: Expected an int, got a boolean``, wrapped in a ~40,000-line dump;
  protobuf 6.33 took them silently);
- it rounds each float64 split threshold to the nearest float32, so a float32 input equal to
  the rounded-up value goes left where scikit-learn sends it right (a diabetes row came out
  4.4 off); its own ``adjust_threshold_for_sklearn``, used for the other trees, is off here.

``tests/export/test_upstream.py`` fails once the unshimmed converter is right, so a shim can go.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from machinery.errors import UserError
from machinery.modelcard import Task

INPUT_NAME = "input"
# Opsets onnxruntime 1.18+ runs; pinned so the same estimator gives the same bytes.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
VALUE_OUTPUT = "variable"  # skl2onnx's name for a regressor's output


class ExportError(UserError):
    """The converter refused the estimator: one line, the estimator and the reason."""


def task_of(estimator: Any) -> Task:
    """``classification`` or ``regression``: what the card's ``task`` says for ``estimator``."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    raise ExportError(
        f"{describe(estimator)} is neither a classifier nor a regressor: the model card knows"
        " only these two tasks"
    )


def describe(estimator: Any) -> str:
    """``Pipeline(StandardScaler → Ridge)`` or ``Ridge``: how an error names the estimator."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        return f"Pipeline({' → '.join(describe(step) for _, step in steps)})"
    return type(estimator).__name__


def to_onnx(estimator: Any, n_features: int, *, input_name: str = INPUT_NAME) -> Any:
    """The ONNX ``ModelProto`` of a fitted ``estimator`` taking float32 rows of ``n_features``.

    Raises ``ExportError`` (one line) when the converter fails."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    options = {id(final): {"zipmap": False}} if task_of(final) == "classification" else None
    try:
        with warnings.catch_warnings(), _bool_attributes_as_ints(), _exact_hgb_thresholds():
            # skl2onnx reads attributes scikit-learn deprecates (SVC's probA_/probB_).
            warnings.simplefilter("ignore", FutureWarning)
            return convert(
                estimator,
                initial_types=[(input_name, FloatTensorType([None, n_features]))],
                options=options,
                target_opset=TARGET_OPSET,
            )
    except Exception as exc:  # noqa: BLE001 - converters raise anything; the reason is what counts
        raise ExportError(
            f"cannot export {describe(estimator)} to ONNX: {converter_reason(exc)}"
        ) from None


def converter_reason(exc: BaseException, limit: int = 240) -> str:
    """The root cause's first line: skl2onnx wraps a small error (``Expected an int, got a
    boolean``) in one whose message is the whole node's attributes, tens of thousands of lines."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    lines = str(root).strip().splitlines()
    text = lines[0].strip() if lines else ""
    reason = f"{type(root).__name__}: {text}" if text else type(root).__name__
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _as_int(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value):
        return [int(v) if isinstance(v, bool) else v for v in value]
    return value


@contextmanager
def _bool_attributes_as_ints() -> Iterator[None]:
    """While converting, node attributes holding Python bools hold 0/1 instead (ONNX has no
    boolean attribute type; the spec encodes them as ints). Not thread-safe: conversion runs in
    a train stage, one estimator at a time."""
    from skl2onnx.common._container import ModelComponentContainer

    original = ModelComponentContainer.add_node

    def add_node(self: Any, *args: Any, **attrs: Any) -> Any:
        return original(self, *args, **{k: _as_int(v) for k, v in attrs.items()})

    ModelComponentContainer.add_node = add_node
    try:
        yield
    finally:
        ModelComponentContainer.add_node = original


@contextmanager
def _exact_hgb_thresholds() -> Iterator[None]:
    """While converting, HistGradientBoosting trees get the float32 thresholds skl2onnx gives
    every other tree: the largest float32 ≤ the float64 threshold, so ``x ≤ t`` decides the
    same in ONNX as in scikit-learn for every float32 ``x``."""
    from skl2onnx.operator_converters import random_forest

    original = random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting

    def add_tree(*args: Any, **kwargs: Any) -> Any:
        # Positional: attr_pairs, is_classifier, tree, tree_id, tree_weight, weight_id_bias,
        # leaf_weights_are_counts, adjust_threshold_for_sklearn (passed as False).
        if len(args) >= 8:
            args = (*args[:7], True, *args[8:])
        else:
            kwargs["adjust_threshold_for_sklearn"] = True
        return original(*args, **kwargs)

    random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = add_tree
    try:
        yield
    finally:
        random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = original
