from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from machinery import modelcard as mc
from machinery.errors import exits_cleanly
from machinery.export import task_of, to_onnx
from machinery.params import load_section

OUT = Path("models")


class Params(BaseModel):
    alpha: float


@exits_cleanly
def main() -> None:
    p = load_section("train", Params)
    with np.load("data/prepared/train.npz") as d:
        X, y = d["X"], d["y"]
    model = make_pipeline(StandardScaler(), Ridge(alpha=p.alpha)).fit(X, y)
    OUT.mkdir(exist_ok=True)
    mc.write_onnx(to_onnx(model, X.shape[1], input_name="features"), OUT / mc.MODEL_FILENAME)
    output_bins, output_frequencies = mc.value_statistics(model.predict(X))
    feature_bins, feature_frequencies = mc.feature_statistics(X)
    card = mc.ModelCard(
        task=task_of(model),
        name="diabetes-progression",
        estimator="ridge",
        input=mc.TensorSpec(name="features", shape=[None, X.shape[1]]),
        output=mc.ValueOutput(name="variable", shape=[None, 1]),
        params=p.model_dump(),
        data_version=json.loads(Path("data/prepared/version.json").read_text())["version"],
        code_commit=mc.code_commit(),
        library_versions=mc.library_versions("scikit-learn", "skl2onnx"),
        onnx_sha256=mc.sha256_file(OUT / mc.MODEL_FILENAME),
        created=mc.now_utc(),
        reference=mc.Reference(
            output_bins=output_bins,
            output_frequencies=output_frequencies,
            feature_bins=feature_bins,
            feature_frequencies=feature_frequencies,
        ),
    )
    mc.write_card(card, OUT)


if __name__ == "__main__":
    main()
