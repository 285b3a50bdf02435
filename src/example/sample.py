"""``make example-image``: one digit from the example's data as a picture a user would upload.

Dark ink on a light background, upscaled with nearest-neighbour (the card inverts and shrinks
it back to 8×8). Writes ``.local/example.png`` unless given another path; prints the path and
the digit it shows. Needs no pipeline run: the digits are bundled with scikit-learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from machinery.errors import UserError, exits_cleanly

DEFAULT = Path(".local/example.png")
INDEX = 1  # a clear "1"; any index works
SCALE = 8


def render(pixels: np.ndarray, scale: int = SCALE) -> Image.Image:
    """An 8×8 digits row (0..16, ink high) as a dark-on-light grayscale picture."""
    ink = np.asarray(pixels, dtype=np.float64).reshape(8, 8) / 16.0
    gray = np.round(255.0 * (1.0 - ink)).astype(np.uint8)
    return Image.fromarray(gray, mode="L").resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)


def write_example(path: Path = DEFAULT, index: int = INDEX) -> int:
    digits = load_digits()
    if not 0 <= index < len(digits.target):
        raise UserError(f"--index {index}: out of range 0..{len(digits.target) - 1}")
    path.parent.mkdir(parents=True, exist_ok=True)
    render(digits.data[index]).save(path, format="PNG")
    return int(digits.target[index])


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example.sample", description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--index", type=int, default=INDEX, help="which bundled digit")
    args = parser.parse_args(argv)
    label = write_example(args.path, args.index)
    print(f"{args.path}: a handwritten {label}, dark ink on light ({8 * SCALE}×{8 * SCALE} px)")


if __name__ == "__main__":
    main()
