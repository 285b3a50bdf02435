"""The model card: the contract between a trained model and everything that serves it.

The example's train stage writes ``model_card.json`` beside ``model.onnx``. The registry, the
report and the inference service read only this file (and the ONNX bytes), so a forker's model
with another input shape or preprocessing is served without touching the service.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from machinery.errors import UserError

CARD_FILENAME = "model_card.json"
MODEL_FILENAME = "model.onnx"
SCHEMA_VERSION = 1


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
    """Names of the ONNX outputs holding the label and the class probabilities."""

    label: str = "label"
    probabilities: str = "probabilities"


class Reference(_Strict):
    """Training-data statistics the service compares live traffic against (drift)."""

    class_frequencies: list[float]
    intensity_bins: list[float]
    intensity_frequencies: list[float]


class ModelCard(_Strict):
    schema_version: int = SCHEMA_VERSION
    name: str
    estimator: str
    input: TensorSpec
    output: OutputSpec = OutputSpec()
    preprocessing: ImagePreprocessing | None = None
    labels: list[str]
    params: dict[str, Any]
    data_version: str
    code_commit: str
    library_versions: dict[str, str]
    onnx_sha256: str
    created: datetime
    reference: Reference | None = None

    @property
    def n_features(self) -> int:
        """Features per row: the product of the non-batch input dimensions."""
        n = 1
        for dim in self.input.shape[1:]:
            if dim is None:
                raise ValueError("only the batch axis of the input may be dynamic")
            n *= dim
        return n


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def library_versions(*names: str) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def now_utc() -> datetime:
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
    except ValueError as exc:
        raise UserError(f"{path}: not a valid model card ({str(exc).splitlines()[0]})") from None


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
