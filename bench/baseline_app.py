"""The hand-written comparison: the same ``/predict`` (Pillow → ONNX Runtime for a model whose
card has image preprocessing, JSON rows otherwise) with nothing else — no auth, no metrics, no
swap, no input limits — plus a constant ``/ping``.

``BENCH_MODEL_DIR`` names a directory with ``model.onnx`` and ``model_card.json``; the card's
conversion (grayscale, size, inversion, scale) is written out here by hand, the textbook way.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, Request, UploadFile
from PIL import Image

from machinery.modelcard import CARD_FILENAME, MODEL_FILENAME, read_card

MODEL_DIR = Path(os.environ["BENCH_MODEL_DIR"])
CARD = read_card(MODEL_DIR / CARD_FILENAME)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(
    str(MODEL_DIR / MODEL_FILENAME), sess_options=options, providers=["CPUExecutionProvider"]
)
OUTPUTS = [CARD.output.label, CARD.output.probabilities]
LABELS = list(CARD.labels)

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


def _answer(row: np.ndarray) -> tuple[Any, Any]:
    label, probabilities = session.run(OUTPUTS, {CARD.input.name: row})
    return label, probabilities


if CARD.preprocessing is not None:
    spec = CARD.preprocessing

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)) -> dict[str, object]:
        data = await file.read()
        image = Image.open(io.BytesIO(data)).convert("L" if spec.grayscale else "RGB")
        image = image.resize((spec.width, spec.height), Image.Resampling.BOX)
        pixels = np.asarray(image, dtype=np.float32)
        if spec.invert:
            pixels = 255.0 - pixels
        scale = np.float32((spec.scale_max - spec.scale_min) / 255.0)
        row = (pixels * scale + np.float32(spec.scale_min)).reshape(1, -1)
        label, probabilities = _answer(row)
        return {
            "label": str(label[0]),
            "probabilities": dict(zip(LABELS, probabilities[0].tolist())),
        }

else:

    @app.post("/predict")
    async def predict_rows(request: Request) -> dict[str, object]:
        rows = np.asarray((await request.json())["instances"], dtype=np.float32)
        labels, probabilities = _answer(rows)
        return {
            "predictions": [
                {"label": str(label), "probabilities": dict(zip(LABELS, row))}
                for label, row in zip(labels.tolist(), probabilities.tolist())
            ]
        }


@app.post("/v2/models/{name}/infer")
async def v2_infer(request: Request, name: str) -> dict[str, object]:
    """The textbook V2 endpoint: parse the JSON, run the session, answer; no checks at all."""
    document = await request.json()
    tensor = document["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    labels, probabilities = _answer(rows)
    return {
        "model_name": name,
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [len(rows)],
             "data": [str(label) for label in labels.tolist()]},
            {"name": "probabilities", "datatype": "FP32", "shape": list(probabilities.shape),
             "data": probabilities.ravel().tolist()},
        ],
    }  # fmt: skip
