"""Turn an uploaded image into one input row, exactly as the model card says.

Nothing here knows about digits: size, grayscale, inversion and scale all come from the card's
``preprocessing``, so a forker's model with another input is served unchanged.

The pixel limit is checked on the header (``open``), before any pixel is decoded. Pillow's own
global bomb guard is switched off by the service (``disable_pillow_bomb_guard``): it would warn
on every image between its limit and twice that, and refuse above twice the limit quoting a
number that is not ours; this check is the same test on the same header, with our limit.
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

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, int]]:
        # Raised in a decoder process too: keep the status across the pickle.
        return (ImageRejected, (str(self), self.status_code))


# The default pixel limit, from the card: 256 × its input size (16× each side: any picture
# taken of what the model sees at that size), at least 1 MP (a 1000×1000 picture always works),
# at most 16 MP (a 16 MP greyscale+alpha PNG is ~40 KB compressed and 64 MB decoded).
CARD_PIXEL_FACTOR = 256
MIN_DEFAULT_PIXELS = 1_000_000
MAX_DEFAULT_PIXELS = 16_000_000


def default_max_pixels(spec: ImagePreprocessing) -> int:
    wanted = CARD_PIXEL_FACTOR * spec.width * spec.height
    return max(MIN_DEFAULT_PIXELS, min(MAX_DEFAULT_PIXELS, wanted))


def disable_pillow_bomb_guard() -> None:
    """Our header check (``ImagePreprocessor.open``) replaces Pillow's process-wide one."""
    Image.MAX_IMAGE_PIXELS = None


class ImagePreprocessor:
    def __init__(
        self, spec: ImagePreprocessing, n_features: int, max_pixels: int | None = None
    ) -> None:
        channels = 1 if spec.grayscale else 3
        if spec.width * spec.height * channels != n_features:
            raise ValueError(
                f"preprocessing gives {spec.width}×{spec.height}×{channels} values but the model"
                f" takes {n_features}"
            )
        self.spec = spec
        self.max_pixels = max_pixels if max_pixels is not None else default_max_pixels(spec)
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
        return self.finish(self.open(data))

    def finish(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """Decode an image ``open`` returned into the model's row (and close it)."""
        try:
            pixels = self._convert(image)
        except ImageRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure on user bytes is a 422
            raise ImageRejected(f"corrupt image: {_one_line(exc)}") from None
        finally:
            image.close()
        return self._table.take(pixels.reshape(1, -1))

    def open(self, data: bytes) -> Image.Image:
        """Read the header only, and refuse an image over the pixel limit (413)."""
        try:
            # Reads the header only: the size is known before any pixel is decoded.
            image = Image.open(io.BytesIO(data), formats=FORMATS)
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
                f" {self.max_pixels} pixels",
                status_code=413,
            )
        return image

    def _convert(self, image: Image.Image) -> npt.NDArray[np.uint8]:
        # JPEG can decode straight at a reduced scale (DCT scaling): far less work for big photos.
        image.draft(self._mode, self._size)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            # Transparent pixels are "paper": flatten onto white before dropping alpha. Resize
            # first (Pillow resizes RGBA/LA premultiplied, so this equals flattening first) and
            # flatten the small picture: a full-size RGBA copy and composite cost 3× the decode.
            if image.mode not in ("RGBA", "LA"):
                image = image.convert("RGBA")
            if image.size != self._size:
                image = image.resize(self._size, self._resample)
            rgba = image.convert("RGBA")
            paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(paper, rgba)
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
