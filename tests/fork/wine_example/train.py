from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier

from machinery import modelcard as mc
from machinery.params import load_section

OUT = Path("models")


class Params(BaseModel):
    n_estimators: int
    learning_rate: float


def main() -> None:
    p = load_section("train", Params)
    with np.load("data/prepared/train.npz") as d:
        X, y = d["X"], d["y"]
    clf = GradientBoostingClassifier(
        n_estimators=p.n_estimators, learning_rate=p.learning_rate, random_state=0
    ).fit(X, y)
    onx = to_onnx(
        clf,
        initial_types=[("features", FloatTensorType([None, 13]))],
        options={id(clf): {"zipmap": False}},
    )
    OUT.mkdir(exist_ok=True)
    mc.write_onnx(onx, OUT / mc.MODEL_FILENAME)
    card = mc.ModelCard(
        task="classification",
        name="wine-quality-grader",
        estimator="gradient_boosting",
        input=mc.TensorSpec(name="features", shape=[None, 13]),
        labels=["barolo", "grignolino", "barbera"],
        params=p.model_dump(),
        data_version=json.loads(Path("data/prepared/version.json").read_text())["version"],
        code_commit=mc.code_commit(),
        library_versions=mc.library_versions("scikit-learn", "skl2onnx"),
        onnx_sha256=mc.sha256_file(OUT / mc.MODEL_FILENAME),
        created=mc.now_utc(),
    )
    mc.write_card(card, OUT)


if __name__ == "__main__":
    main()
