"""Stage ``data``: a deterministic, seeded train/test split of scikit-learn's bundled digits,
plus any new labelled rows found in ``data/incoming/*.csv`` (added to the training split).

``data/incoming/`` is the shift a retrain sees (docs/retraining.md, "New data for a retrain"):
empty here (its README only), so ``make run`` stays offline; a fork points it at a growing
labelled prefix with ``dvc import-url s3://bucket/labelled/ data/incoming``, and a retrain run's
``dvc update`` brings the new rows in. A row is 64 pixel values (0..16) then the digit (0..9),
comma-separated; ``#`` starts a comment.

Writes ``data/prepared/{train,test}.npz`` (``X`` float32 n×64 in 0..16, ``y`` int64) and
``data/prepared/data_version.json`` (a content hash of both, recorded in the model card).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from machinery.errors import UserError, exits_cleanly
from machinery.params import load_section

OUT_DIR = Path("data/prepared")
INCOMING_DIR = Path("data/incoming")
N_PIXELS = 64


class DataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int
    test_size: float = Field(gt=0.0, lt=1.0)


def data_version(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def read_incoming(directory: Path = INCOMING_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The labelled rows of every ``*.csv`` under ``directory`` (sorted by path, so the same
    files give the same arrays); a malformed file is one line naming it."""
    xs, ys = [np.zeros((0, N_PIXELS), np.float32)], [np.zeros(0, np.int64)]
    for path in sorted(directory.rglob("*.csv")) if directory.is_dir() else []:
        try:
            rows = np.loadtxt(path, delimiter=",", comments="#", ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise UserError(f"{path}: not comma-separated numbers ({exc})") from None
        if rows.size == 0:
            continue
        if rows.shape[1] != N_PIXELS + 1:
            raise UserError(
                f"{path}: {rows.shape[1]} columns per row, expected {N_PIXELS} pixels + the label"
            )
        pixels, labels = rows[:, :N_PIXELS], rows[:, N_PIXELS]
        if pixels.min() < 0 or pixels.max() > 16:
            raise UserError(f"{path}: pixel values must be within 0..16")
        if not np.isin(labels, np.arange(10)).all():
            raise UserError(f"{path}: labels must be the digits 0..9")
        xs.append(pixels.astype(np.float32))
        ys.append(labels.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def prepare(params: DataParams, out_dir: Path = OUT_DIR, incoming: Path = INCOMING_DIR) -> str:
    digits = load_digits()
    X = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=params.test_size, random_state=params.seed, stratify=y
    )
    # New rows train the model; the test split stays the fixed held-out digits, so a retrain's
    # accuracy is comparable with the card it replaces.
    X_new, y_new = read_incoming(incoming)
    X_train, y_train = np.concatenate([X_train, X_new]), np.concatenate([y_train, y_new])
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "train.npz", X=X_train, y=y_train)
    np.savez(out_dir / "test.npz", X=X_test, y=y_test)
    version = data_version(X_train, y_train, X_test, y_test)
    summary: dict[str, object] = {
        "data_version": version,
        "n_train": len(y_train),
        "n_test": len(y_test),
    }
    if len(y_new):  # only then: without new rows the output stays byte-identical
        summary["n_incoming"] = len(y_new)
    (out_dir / "data_version.json").write_text(json.dumps(summary) + "\n")
    return version


def load_split(name: str, directory: Path = OUT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Load ``train`` or ``test``; a missing or unreadable file is one readable line."""
    path = directory / f"{name}.npz"
    if not path.is_file():
        raise UserError(f"{path}: not found (run the data stage first: dvc repro data)")
    try:
        with np.load(path) as arrays:
            return arrays["X"], arrays["y"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a prepared split ({exc})") from None


def load_data_version(directory: Path = OUT_DIR) -> str:
    path = directory / "data_version.json"
    if not path.is_file():
        raise UserError(f"{path}: not found (run the data stage first: dvc repro data)")
    return str(json.loads(path.read_text())["data_version"])


@exits_cleanly
def main() -> None:
    version = prepare(load_section("data", DataParams))
    print(f"data: prepared {OUT_DIR} (data version {version[:12]})")


if __name__ == "__main__":
    main()
