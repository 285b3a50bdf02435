from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from machinery.params import load_section

OUT = Path("data/prepared")


class Params(BaseModel):
    seed: int
    holdout: float


def main() -> None:
    p = load_section("data", Params)
    X, y = load_diabetes(return_X_y=True)
    parts = train_test_split(
        X.astype(np.float32), y.astype(np.float32), test_size=p.holdout, random_state=p.seed
    )
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(OUT / "train.npz", X=parts[0], y=parts[2])
    np.savez(OUT / "test.npz", X=parts[1], y=parts[3])
    digest = hashlib.sha256(b"".join(a.tobytes() for a in parts)).hexdigest()
    (OUT / "version.json").write_text(json.dumps({"version": digest}))


if __name__ == "__main__":
    main()
