"""One loaded model: an ONNX Runtime session, its card, and how to answer for it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from machinery.modelcard import ModelCard
from service.drift import DriftTracker
from service.preprocessing import ImagePreprocessor

_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


class InvalidModel(Exception):
    """The bytes are not a model this card describes (not ONNX, wrong inputs, bad outputs)."""


@dataclass(frozen=True)
class Prediction:
    labels: list[str]
    probabilities: npt.NDArray[np.float32]  # rows × classes
    class_indices: npt.NDArray[np.int64]
    seconds: float  # ONNX Runtime's run() alone


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
        missing = {card.output.label, card.output.probabilities} - outputs
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
            drift=DriftTracker(len(card.labels), card.reference),
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
        if prediction.probabilities.shape != (1, len(self.card.labels)):
            raise InvalidModel(
                f"probabilities have shape {prediction.probabilities.shape}, expected"
                f" (1, {len(self.card.labels)}) for the card's labels"
            )

    def predict(self, rows: npt.NDArray[np.float32]) -> Prediction:
        dtype = _DTYPES[self.card.input.dtype]
        feed = rows if rows.dtype == dtype else rows.astype(dtype)
        started = time.perf_counter()
        label_out, proba_out = self.session.run(
            [self.card.output.label, self.card.output.probabilities], {self.card.input.name: feed}
        )
        seconds = time.perf_counter() - started
        labels: list[str] = []
        indices = np.empty(len(label_out), dtype=np.int64)
        for i, raw in enumerate(label_out.tolist()):
            name, index = self._resolve(raw)
            labels.append(name)
            indices[i] = index
        return Prediction(labels, np.asarray(proba_out, dtype=np.float32), indices, seconds)

    def _resolve(self, raw: object) -> tuple[str, int]:
        found = self._label_of.get(raw)
        if found is None:
            raise InvalidModel(f"model returned label {raw!r}, not one of the card's labels")
        return found


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
