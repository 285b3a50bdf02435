"""The model card: the contract between a trained model and everything that serves it.

The example's train stage writes ``model_card.json`` beside ``model.onnx``. The registry, the
report and the inference service read only this file (and the ONNX bytes), so a forker's model
with another input shape or preprocessing is served without touching the service.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from machinery.errors import UserError
from machinery.files import sha256_file as sha256_file  # re-exported: callers read cards

CARD_FILENAME = "model_card.json"
MODEL_FILENAME = "model.onnx"
# 2: the card names its ``task``; a regression card has no labels and names its value output.
SCHEMA_VERSION = 2
Task = Literal["classification", "regression"]
REGENERATE = "re-run train (`make run`, or `dvc repro train`) to write a current card"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One ONNX input: its name, shape (``None`` for the batch axis) and dtype."""

    name: str
    shape: list[int | None]
    dtype: Literal["float32", "float64", "int64"] = "float32"


class ImagePreprocessing(_Strict):
    """How an uploaded image becomes one row of the model's input.

    grayscale → resize to ``width`` × ``height`` → optional inversion (so ink is high) →
    linear scale of 0..255 onto ``scale_min``..``scale_max`` → flatten row-major.
    """

    kind: Literal["image"] = "image"
    grayscale: bool = True
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    invert: bool = False
    scale_min: float = 0.0
    scale_max: float = 1.0
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"] = "box"


class OutputSpec(_Strict):
    """A classifier's outputs: names of the ONNX outputs holding the label and the class
    probabilities."""

    label: str = "label"
    probabilities: str = "probabilities"


class ValueOutput(_Strict):
    """A regressor's output: the ONNX output holding the predicted values, its shape (``None``
    for the batch axis; ``[None, 1]`` is one value per row, as skl2onnx writes it) and dtype."""

    name: str = "variable"
    shape: list[int | None] = [None, 1]
    dtype: Literal["float32", "float64"] = "float32"

    @property
    def width(self) -> int:
        """Values per row: the product of the non-batch dimensions (1 for ``[None]``)."""
        n = 1
        for dim in self.shape[1:]:
            if dim is None:
                raise ValueError("only the batch axis of the output may be dynamic")
            n *= dim
        return n


class Reference(_Strict):
    """Training-data statistics the service compares live traffic against (drift).

    ``class_frequencies``: the training share of each label (classification). ``output_*``:
    a histogram of the model's predicted values on its training rows (regression: k + 1 bin
    edges, k shares; see ``value_statistics``). ``intensity_*``: a histogram of each row's
    mean value (image models; empty = no such signal). ``feature_*`` (optional, any model, the
    input-drift signal of tabular ones): per input feature, bin edges (k + 1 increasing
    numbers, k may differ per feature; an empty list skips that feature) and the training share
    of rows in each bin. Empty or missing statistics mean no such signal.
    """

    class_frequencies: list[float] = []
    output_bins: list[float] = []
    output_frequencies: list[float] = []
    intensity_bins: list[float] = []
    intensity_frequencies: list[float] = []
    feature_names: list[str] | None = None
    feature_bins: list[list[float]] | None = None
    feature_frequencies: list[list[float]] | None = None


class ModelCard(_Strict):
    """What a model is and how to call it. ``task`` decides the rest: a classification card
    lists its ``labels`` and names label + probabilities outputs (``OutputSpec``); a regression
    card has no labels and names its value output (``ValueOutput``)."""

    schema_version: int = SCHEMA_VERSION
    task: Task
    name: str
    estimator: str
    input: TensorSpec
    output: OutputSpec | ValueOutput = OutputSpec()
    preprocessing: ImagePreprocessing | None = None
    labels: list[str] = []
    params: dict[str, Any]
    data_version: str
    code_commit: str
    library_versions: dict[str, str]
    onnx_sha256: str
    created: datetime
    reference: Reference | None = None

    @model_validator(mode="before")
    @classmethod
    def _current_schema(cls, data: Any) -> Any:
        """An old card fails with what is missing and how to get a new one, in one line."""
        if not isinstance(data, dict):
            return data
        if "task" not in data:
            version = data.get("schema_version", 1)
            raise ValueError(
                f"model card schema_version {version} has no 'task' field (classification or"
                f" regression; schema_version {SCHEMA_VERSION} needs it): {REGENERATE}"
            )
        if data["task"] == "regression" and "output" not in data:
            data = {**data, "output": ValueOutput().model_dump()}
        return data

    @model_validator(mode="after")
    def _fits_task(self) -> ModelCard:
        if self.task == "classification":
            if not self.labels:
                raise ValueError("a classification card lists its labels")
            if not isinstance(self.output, OutputSpec):
                raise ValueError("a classification card's output names label and probabilities")
        else:
            if self.labels:
                raise ValueError("a regression card has no labels (task: regression)")
            if not isinstance(self.output, ValueOutput):
                raise ValueError("a regression card's output names its value: name, shape, dtype")
        return self

    @property
    def n_features(self) -> int:
        """Features per row: the product of the non-batch input dimensions."""
        n = 1
        for dim in self.input.shape[1:]:
            if dim is None:
                raise ValueError("only the batch axis of the input may be dynamic")
            n *= dim
        return n


def feature_statistics(rows: Any, n_bins: int = 10) -> tuple[list[list[float]], list[list[float]]]:
    """Per-feature decile edges of the training ``rows`` (n × features) and the share of rows
    in each bin, for ``Reference.feature_bins``/``feature_frequencies``. Quantile edges give
    every bin data to compare against; repeated edges (discrete features) merge, and a
    constant feature gets no bins (nothing to drift from)."""
    import numpy as np  # the card itself needs no numpy; only writers of statistics do

    data = np.asarray(rows, dtype=np.float64)
    edges_out: list[list[float]] = []
    freqs_out: list[list[float]] = []
    for column in data.reshape(len(data), -1).T:
        edges = np.unique(np.quantile(column, np.linspace(0.0, 1.0, n_bins + 1)))
        if len(edges) < 2:
            edges_out.append([])
            freqs_out.append([])
            continue
        # Bins are [e_i, e_i+1); the last one closed, as the service counts them.
        index = np.clip(np.searchsorted(edges, column, side="right") - 1, 0, len(edges) - 2)
        counts = np.bincount(index, minlength=len(edges) - 1)
        edges_out.append([round(float(e), 6) for e in edges])
        freqs_out.append([round(float(c) / len(column), 6) for c in counts])
    return edges_out, freqs_out


def value_statistics(values: Any, n_bins: int = 10) -> tuple[list[float], list[float]]:
    """Decile edges of a regressor's predicted ``values`` on its training rows and the share
    in each bin, for ``Reference.output_bins``/``output_frequencies``: the service's output
    histogram and output drift compare live predictions with these."""
    import numpy as np

    bins, freqs = feature_statistics(np.asarray(values, dtype=np.float64).reshape(-1, 1), n_bins)
    return bins[0], freqs[0]


def code_commit() -> str:
    """The commit the code was trained from; ``+dirty`` when the workspace has changes.

    An offloaded stage runs from a snapshot without ``.git``; the offload passes the commit in
    ``MLOPS_CODE_COMMIT``.
    """
    if os.environ.get("MLOPS_CODE_COMMIT"):
        return os.environ["MLOPS_CODE_COMMIT"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def write_onnx(model: Any, path: Path) -> str:
    """Serialize an ONNX ``ModelProto`` to ``path`` reproducibly; return its sha256.

    skl2onnx gathers the opset imports in a set, so their order follows Python's per-process
    string hashing: the same model came out as two different files about one run in two.
    Sorting them by domain gives the same bytes for the same model, so ``dvc.lock`` holds.
    """
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version
    path.write_bytes(model.SerializeToString())
    return sha256_file(path)


def library_versions(*names: str) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def now_utc() -> datetime:
    """The card's ``created``: ``SOURCE_DATE_EPOCH`` when set (the reproducible-builds
    convention; ``mlops offload`` sets it to the time of the commit the stage's inputs come from,
    so the same inputs give the same card bytes), else the current time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    return datetime.now(timezone.utc)


def write_card(card: ModelCard, directory: Path) -> Path:
    path = directory / CARD_FILENAME
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    return path


def read_card(path: Path) -> ModelCard:
    """Read and validate a card; a missing or malformed card is a ``UserError``."""
    if not path.is_file():
        raise UserError(f"{path}: model card not found")
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise UserError(f"{path}: not a valid model card ({first_error(exc)})") from None


def first_error(exc: ValidationError) -> str:
    """The first validation error as one line: where, then why (pydantic's ``Value error, ``
    prefix dropped: the card's own checks already say what is wrong)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def verify_model(model_path: Path, card: ModelCard) -> None:
    """Refuse an ONNX file whose bytes are not the ones the card describes."""
    actual = sha256_file(model_path)
    if actual != card.onnx_sha256:
        raise UserError(
            f"{model_path}: sha256 {actual[:12]}… does not match the model card "
            f"({card.onnx_sha256[:12]}…)"
        )


DIRTY_SUFFIX = "+dirty"


def short_commit(commit: str, length: int = 12) -> str:
    """The first ``length`` characters of a commit, keeping the ``+dirty`` marker a plain cut
    (``commit[:12]``) would drop: a model trained from uncommitted changes must say so."""
    sha, plus, rest = commit.partition("+")
    if not all(c in "0123456789abcdef" for c in sha.lower()):
        return commit  # not a hash ("unknown", a data version name): nothing to shorten
    return sha[:length] + plus + rest


def is_dirty(commit: str) -> bool:
    return commit.endswith(DIRTY_SUFFIX)
