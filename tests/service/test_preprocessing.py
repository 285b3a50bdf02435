"""The conversion follows the card: another size, colour, scale or labels work."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from machinery.modelcard import (
    ImagePreprocessing,
    ModelCard,
    TensorSpec,
    sha256_file,
    write_card,
)
from machinery.registry import Registry
from service.preprocessing import ImagePreprocessor, ImageRejected
from tests.service.conftest import ADMIN, PREDICT, AppFactory


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_grayscale_invert_and_scale_follow_the_card() -> None:
    spec = ImagePreprocessing(width=2, height=1, invert=True, scale_min=0.0, scale_max=16.0)
    convert = ImagePreprocessor(spec, n_features=2, max_pixels=100)
    image = Image.new("L", (2, 1))
    image.putdata([0, 255])  # black ink, white paper
    assert convert(png(image)).tolist() == [[16.0, 0.0]]


def test_colour_without_inversion() -> None:
    spec = ImagePreprocessing(
        grayscale=False, width=1, height=1, invert=False, scale_min=-1.0, scale_max=1.0
    )
    convert = ImagePreprocessor(spec, n_features=3, max_pixels=100)
    row = convert(png(Image.new("RGB", (4, 4), (255, 0, 255))))
    assert row.tolist() == [[1.0, -1.0, 1.0]]


def test_card_whose_size_does_not_match_the_input_is_refused() -> None:
    with pytest.raises(ValueError, match="takes 20"):
        ImagePreprocessor(ImagePreprocessing(width=4, height=4), n_features=20, max_pixels=100)


def test_dimension_limit_comes_from_settings() -> None:
    convert = ImagePreprocessor(ImagePreprocessing(width=2, height=2), 4, max_pixels=15)
    with pytest.raises(ImageRejected) as err:
        convert(png(Image.new("L", (4, 4))))
    assert err.value.status_code == 413


def _animal_model(directory: Path) -> Path:
    """A forker's model: 3×3 colour pictures, three named classes, 0..1 scale."""
    rng = np.random.default_rng(0)
    colours = {"sky": (40, 90, 230), "grass": (40, 200, 60), "sand": (230, 210, 140)}
    X, y = [], []
    for index, rgb in enumerate(colours.values()):
        noise = rng.normal(0, 10, size=(60, 9, 3))
        X.append(np.clip(np.array(rgb) + noise, 0, 255).reshape(60, 27) / 255.0)
        y += [index] * 60
    estimator = LogisticRegression(max_iter=500).fit(np.vstack(X).astype(np.float32), y)
    onx = to_onnx(
        estimator,
        np.zeros((1, 27), dtype=np.float32),
        options={id(estimator): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    directory.mkdir()
    onnx_names = [o.name for o in onx.graph.output]
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    card = ModelCard(
        task="classification",
        name="landscape",
        estimator="logreg",
        input=TensorSpec(name=onx.graph.input[0].name, shape=[None, 27]),
        output={"label": onnx_names[0], "probabilities": onnx_names[1]},
        preprocessing=ImagePreprocessing(grayscale=False, width=3, height=3, scale_max=1.0),
        labels=list(colours),
        params={},
        data_version="synthetic",
        code_commit="test",
        library_versions={},
        onnx_sha256=sha256_file(directory / "model.onnx"),
        created=datetime.now(timezone.utc),
    )
    write_card(card, directory)
    return directory


def test_a_forkers_model_is_served_unchanged(
    make_app: AppFactory, registry_dir: Path, tmp_path: Path
) -> None:
    Registry.from_url(str(registry_dir)).publish(
        "landscape-v1", _animal_model(tmp_path / "landscape"), metrics={}
    )
    with TestClient(make_app()) as client:
        swap = client.post("/replace_ml_model", json={"tag": "landscape-v1"}, headers=ADMIN)
        assert swap.status_code == 200, swap.text
        picture = png(Image.new("RGB", (30, 20), (45, 195, 70)), "JPEG")
        response = client.post(
            "/predict", files={"file": ("g.jpg", picture, "image/jpeg")}, headers=PREDICT
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["label"] == "grass"
        assert set(body["probabilities"]) == {"sky", "grass", "sand"}
        wrong = client.post("/predict", json={"instances": [[0.0] * 20]}, headers=PREDICT)
        assert wrong.status_code == 422
        assert "[27 numbers]" in wrong.json()["detail"]
    assert (
        json.loads((tmp_path / "landscape" / "model_card.json").read_text())["labels"][1] == "grass"
    )
