"""The hand-written comparison: the same multipart ``/predict`` (Pillow → ONNX Runtime) with
nothing else — no auth, no metrics, no swap, no input limits — plus a constant ``/ping``.

``BENCH_MODEL`` names the ``model.onnx``; the conversion is the digits card's, written out.
"""

from __future__ import annotations

import io
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, UploadFile
from PIL import Image

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(
    os.environ["BENCH_MODEL"], sess_options=options, providers=["CPUExecutionProvider"]
)
LABELS = [str(i) for i in range(10)]

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.post("/predict")
async def predict(file: UploadFile = File(...)) -> dict[str, object]:
    data = await file.read()
    image = Image.open(io.BytesIO(data)).convert("L").resize((8, 8), Image.Resampling.BOX)
    row = (255.0 - np.asarray(image, dtype=np.float32)) * np.float32(16.0 / 255.0)
    label, probabilities = session.run(["label", "probabilities"], {"input": row.reshape(1, 64)})
    return {
        "label": str(label[0]),
        "probabilities": dict(zip(LABELS, probabilities[0].tolist())),
    }
