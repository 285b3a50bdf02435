"""Turn an uploaded image into one input row, exactly as the model card says.

Nothing here knows about digits: size, grayscale, inversion and scale all come from the card's
``preprocessing``, so a forker's model with another input is served unchanged.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from machinery.modelcard import ImagePreprocessing

# Decoders we accept. Fewer formats, fewer parsers exposed to untrusted bytes.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


class ImageRejected(Exception):
    """The upload is not an image we can decode (422), or is too big to decode (413)."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


class ImagePreprocessor:
    def __init__(self, spec: ImagePreprocessing, n_features: int, max_pixels: int) -> None:
        channels = 1 if spec.grayscale else 3
        if spec.width * spec.height * channels != n_features:
            raise ValueError(
                f"preprocessing gives {spec.width}×{spec.height}×{channels} values but the model"
                f" takes {n_features}"
            )
        self.spec = spec
        self.max_pixels = max_pixels
        self._mode = "L" if spec.grayscale else "RGB"
        self._size = (spec.width, spec.height)
        self._resample = _RESAMPLE[spec.resample]
        # Inversion and scaling folded into one 256-entry table: a single numpy take per image.
        levels = np.arange(256, dtype=np.float64)
        if spec.invert:
            levels = 255.0 - levels
        scale = (spec.scale_max - spec.scale_min) / 255.0
        self._table = (levels * scale + spec.scale_min).astype(np.float32)

    def __call__(self, data: bytes) -> npt.NDArray[np.float32]:
        image = self._open(data)
        try:
            pixels = self._convert(image)
        except ImageRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure on user bytes is a 422
            raise ImageRejected(f"corrupt image: {_one_line(exc)}") from None
        finally:
            image.close()
        return self._table.take(pixels.reshape(1, -1))

    def _open(self, data: bytes) -> Image.Image:
        try:
            # Reads the header only: the size is known before any pixel is decoded.
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError as exc:
            raise ImageRejected(f"image refused: {_one_line(exc)}", status_code=413) from None
        except UnidentifiedImageError:
            # Pillow's own message names an internal buffer object: say what we expected instead.
            raise ImageRejected(f"not a decodable image (expected {', '.join(FORMATS)})") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on hostile input
            raise ImageRejected(
                f"not a decodable image ({', '.join(FORMATS)}): {_one_line(exc)}"
            ) from None
        width, height = image.size
        if width * height > self.max_pixels:
            image.close()
            raise ImageRejected(
                f"image is {width}×{height} = {width * height} pixels; the limit is"
                f" {self.max_pixels}",
                status_code=413,
            )
        return image

    def _convert(self, image: Image.Image) -> npt.NDArray[np.uint8]:
        # JPEG can decode straight at a reduced scale (DCT scaling): far less work for big photos.
        image.draft(self._mode, self._size)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            # Transparent pixels are "paper": flatten onto white before dropping alpha.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        if image.mode != self._mode:
            image = image.convert(self._mode)
        if image.size != self._size:
            image = image.resize(self._size, self._resample)
        else:
            image.load()
        return np.asarray(image, dtype=np.uint8)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
