"""Stage ``data``: a deterministic, seeded train/test split of scikit-learn's bundled digits.

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


def prepare(params: DataParams, out_dir: Path = OUT_DIR) -> str:
    digits = load_digits()
    X = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=params.test_size, random_state=params.seed, stratify=y
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "train.npz", X=X_train, y=y_train)
    np.savez(out_dir / "test.npz", X=X_test, y=y_test)
    version = data_version(X_train, y_train, X_test, y_test)
    (out_dir / "data_version.json").write_text(
        json.dumps({"data_version": version, "n_train": len(y_train), "n_test": len(y_test)}) + "\n"
    )
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
