"""One loaded model: an ONNX Runtime session, its card, and how to answer for it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from machinery.modelcard import ModelCard, OutputSpec, ValueOutput
from service.drift import DriftTracker
from service.preprocessing import ImagePreprocessor

_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


class InvalidModel(Exception):
    """The bytes are not a model this card describes (not ONNX, wrong inputs, bad outputs)."""


@dataclass(frozen=True)
class Prediction:
    """A classifier's answer (``labels``, ``probabilities``, ``class_indices``) or a
    regressor's (``values``, rows × the card's output width; the class fields are empty)."""

    labels: list[str]
    probabilities: npt.NDArray[np.float32]  # rows × classes
    class_indices: npt.NDArray[np.int64]
    seconds: float  # ONNX Runtime's run() alone
    values: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class LoadedModel:
    tag: str
    card: ModelCard
    session: ort.InferenceSession
    preprocessor: ImagePreprocessor | None
    n_features: int
    drift: DriftTracker = field(compare=False)
    _label_of: dict[object, tuple[str, int]] = field(compare=False, repr=False)

    @classmethod
    def load(
        cls,
        tag: str,
        model_bytes: bytes,
        card: ModelCard,
        *,
        threads: int,
        max_pixels: int | None,
    ) -> LoadedModel:
        """Build the session and prove it answers: a warm-up prediction runs before any switch."""
        try:
            n_features = card.n_features
            if isinstance(card.output, ValueOutput):
                _ = card.output.width  # a dynamic output axis: refused here, not per request
        except ValueError as exc:
            raise InvalidModel(f"model card: {exc}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors
            raise InvalidModel(f"not a loadable ONNX model: {_first_line(exc)}") from None
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if card.input.name not in inputs:
            raise InvalidModel(f"model has no input {card.input.name!r} (has {sorted(inputs)})")
        missing = set(_output_names(card)) - outputs
        if missing:
            raise InvalidModel(f"model lacks outputs {sorted(missing)} (has {sorted(outputs)})")
        preprocessor = None
        if card.preprocessing is not None:
            try:
                preprocessor = ImagePreprocessor(card.preprocessing, n_features, max_pixels)
            except ValueError as exc:
                raise InvalidModel(f"model card: {exc}") from None
        model = cls(
            tag=tag,
            card=card,
            session=session,
            preprocessor=preprocessor,
            n_features=n_features,
            drift=DriftTracker(len(card.labels), card.reference, task=card.task),
            _label_of=_label_lookup(card.labels),
        )
        model.warm_up()
        return model

    def warm_up(self) -> None:
        try:
            prediction = self.predict(np.zeros((1, self.n_features), dtype=np.float32))
        except InvalidModel:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here means "do not switch"
            raise InvalidModel(f"warm-up prediction failed: {_first_line(exc)}") from None
        if prediction.values is not None:
            return  # ``_values`` checked the width
        if prediction.probabilities.shape != (1, len(self.card.labels)):
            raise InvalidModel(
                f"probabilities have shape {prediction.probabilities.shape}, expected"
                f" (1, {len(self.card.labels)}) for the card's labels"
            )

    def predict(self, rows: npt.NDArray[np.float32]) -> Prediction:
        dtype = _DTYPES[self.card.input.dtype]
        feed = rows if rows.dtype == dtype else rows.astype(dtype)
        output = self.card.output
        started = time.perf_counter()
        results = self.session.run(_output_names(self.card), {self.card.input.name: feed})
        seconds = time.perf_counter() - started
        if isinstance(output, ValueOutput):
            values = self._values(results[0], len(rows), output)
            empty = np.empty((len(rows), 0), dtype=np.float32)
            return Prediction([], empty, np.full(len(rows), -1, np.int64), seconds, values)
        label_out, proba_out = results
        labels: list[str] = []
        indices = np.empty(len(label_out), dtype=np.int64)
        for i, raw in enumerate(label_out.tolist()):
            name, index = self._resolve(raw)
            labels.append(name)
            indices[i] = index
        return Prediction(labels, np.asarray(proba_out, dtype=np.float32), indices, seconds)

    @staticmethod
    def _values(raw: object, n_rows: int, output: ValueOutput) -> npt.NDArray[np.float32]:
        values = np.asarray(raw, dtype=np.float32)
        width = output.width
        if values.size != n_rows * width:
            raise InvalidModel(
                f"output {output.name!r} has shape {values.shape}, expected ({n_rows}, {width})"
                " as the card's output shape says"
            )
        return values.reshape(n_rows, width)

    def _resolve(self, raw: object) -> tuple[str, int]:
        found = self._label_of.get(raw)
        if found is None:
            raise InvalidModel(f"model returned label {raw!r}, not one of the card's labels")
        return found


def _output_names(card: ModelCard) -> list[str]:
    """The ONNX outputs a prediction reads: label + probabilities, or the value output."""
    output = card.output
    if isinstance(output, OutputSpec):
        return [output.label, output.probabilities]
    return [output.name]


def _label_lookup(labels: list[str]) -> dict[object, tuple[str, int]]:
    """Map raw ONNX label values (class values or indices, int or str) to (label, column)."""
    lookup: dict[object, tuple[str, int]] = {}
    for index, name in enumerate(labels):
        lookup[index] = (name, index)
    for index, name in enumerate(labels):
        lookup[name] = (name, index)
        lookup[name.encode()] = (name, index)
        try:
            lookup[int(name)] = (name, index)
        except ValueError:
            pass
    return lookup


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
