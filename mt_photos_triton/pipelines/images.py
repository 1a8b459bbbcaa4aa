"""Reading uploaded image bytes: the header check done before any decoding, and the decoders.

The size check reads only the header (Pillow opens lazily), so a decompression bomb or a 20000x10 PNG is
refused before a pixel is decoded; the adapter and the Triton models call the same function.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from mt_photos_triton.errors import IMAGE_TOO_LARGE, INVALID_IMAGE, PipelineError

MAX_SIDE = 10000  # the reference's limit on width and height, in pixels
MAX_PIXELS = 50_000_000  # decompression-bomb budget: 10000 x 5000
# Decoders we accept: what the reference decodes (JPEG, PNG, WebP, BMP, TIFF) plus a GIF's first frame.
# (Pillow's JPEG opener also yields MPO, the multi-picture JPEG some phones write.)
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def probe(data: bytes) -> ImageInfo:
    """Format and size from the header alone; PipelineError when the bytes are no acceptable image."""
    if not data:
        raise PipelineError(INVALID_IMAGE, "empty file")
    Image.init()  # registers every plugin: Image.open(formats=...) fails on a name not yet registered (MPO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
                info = ImageInfo(str(image.format), *image.size)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise PipelineError(IMAGE_TOO_LARGE, "decompression bomb") from error
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for unreadable headers
        raise PipelineError(INVALID_IMAGE, f"unreadable header ({type(error).__name__})") from error
    check_size(info.width, info.height)
    return info


def check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise PipelineError(INVALID_IMAGE, f"empty image {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise PipelineError(IMAGE_TOO_LARGE, f"{width}x{height} is larger than allowed")
