"""``make example-image``: the picture goes through the card's preprocessing (as the service
does) and the example model reads the digit it shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from example.sample import write_example
from machinery.modelcard import read_card
from service.preprocessing import ImagePreprocessor
from tests.support.workspace import Workspace


def test_image_is_dark_ink_on_light(tmp_path: Path) -> None:
    write_example(tmp_path / "x.png")
    pixels = np.asarray(Image.open(tmp_path / "x.png").convert("L"))
    assert np.median(pixels) > 200 and pixels.min() < 60  # light background, dark strokes


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1, 7])
def test_model_reads_the_digit_through_the_card(
    reproduced: Workspace, tmp_path: Path, index: int
) -> None:
    label = write_example(tmp_path / "x.png", index)
    card = read_card(reproduced.path / "models/model_card.json")
    assert card.preprocessing is not None
    row = ImagePreprocessor(card.preprocessing, card.n_features, 1 << 20)(
        (tmp_path / "x.png").read_bytes()
    )
    session = ort.InferenceSession(str(reproduced.path / "models/model.onnx"))
    predicted = session.run(None, {card.input.name: row.reshape(1, -1)})[0]
    assert card.labels[int(predicted[0])] == str(label)
