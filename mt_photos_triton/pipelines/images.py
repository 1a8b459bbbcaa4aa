"""Reading uploaded image bytes: the header check done before any decoding (pure Pillow, nothing else).

The check reads only the header (Pillow opens lazily), so a decompression bomb or a 20000x10 PNG is refused
before a pixel is decoded. The adapter and the Triton python models call this same function with the same
per-route limits, so a direct Triton client meets the checks the adapter applies.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

from PIL import Image

from mt_photos_triton.errors import IMAGE_TOO_LARGE, INVALID_IMAGE, PipelineError

# The reference's limit on width and height, in pixels. mt-photos-ml applies it on /ocr and /represent only
# (its /clip/img has no size limit), and so do we.
MAX_SIDE = 10000
# The decompression-bomb budget, in pixels, on every route. Phones take 50-200 MP photos (8160x6120,
# 12000x9000, 16320x12240 = 199.8 MP), and every photo the reference indexes must be indexed here too:
# 250 MP admits the largest of them with a quarter to spare (other aspect ratios of a 200 MP sensor, stitched
# panoramas) while one decode stays within ~750 MB of RGB; a small file claiming a 60000x60000 canvas
# (3.6 Gpx) is still refused from its header. The adapter may lower it (MAX_IMAGE_PIXELS), never raise it:
# the Triton models, which decode, hold this value.
MAX_PIXELS = 250_000_000
# Decoders we accept: what the reference decodes (JPEG, PNG, WebP, BMP, TIFF) plus a GIF's first frame.
# (Pillow's JPEG opener also yields MPO, the multi-picture JPEG some phones write.)
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")


@dataclass(frozen=True)
class Limits:
    """What one route accepts, checked from the header."""

    max_side: int | None = None  # width and height at most this (None: no side limit)
    max_pixels: int = MAX_PIXELS  # width x height at most this
    refused_formats: frozenset[str] = frozenset()  # formats of ALLOWED_FORMATS this route still refuses

    def with_pixels(self, max_pixels: int) -> Limits:
        return replace(self, max_pixels=min(max_pixels, self.max_pixels))


# per route, as the reference: /clip/img has no side limit; /ocr also refuses GIF (the reference's OpenCV
# cannot decode it, and MT Photos sends none)
CLIP_LIMITS = Limits()
OCR_LIMITS = Limits(max_side=MAX_SIDE, refused_formats=frozenset({"GIF"}))
FACES_LIMITS = Limits(max_side=MAX_SIDE)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(data: bytes, limits: Limits = CLIP_LIMITS) -> ImageInfo:
    """Format and size from the header alone; PipelineError when the bytes are no image `limits` accept."""
    if not data:
        raise PipelineError(INVALID_IMAGE, "empty file")
    Image.init()  # registers every plugin: Image.open(formats=...) fails on a name not yet registered (MPO)
    allow_pillow_to_open(limits.max_pixels)
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            info = ImageInfo(str(image.format), *image.size)
    except Image.DecompressionBombError as error:  # only above twice our budget: refused as too large
        raise PipelineError(IMAGE_TOO_LARGE, "decompression bomb") from error
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for unreadable headers
        raise PipelineError(INVALID_IMAGE, f"unreadable header ({type(error).__name__})") from error
    if info.format in limits.refused_formats:
        raise PipelineError(INVALID_IMAGE, f"{info.format} is not accepted here")
    check_size(info.width, info.height, limits)
    return info


def check_size(width: int, height: int, limits: Limits = CLIP_LIMITS) -> None:
    if width <= 0 or height <= 0:
        raise PipelineError(INVALID_IMAGE, f"empty image {width}x{height}")
    too_wide = limits.max_side is not None and (width > limits.max_side or height > limits.max_side)
    if too_wide or width * height > limits.max_pixels:
        raise PipelineError(IMAGE_TOO_LARGE, f"{width}x{height} is larger than allowed")


def allow_pillow_to_open(max_pixels: int) -> None:
    """Pillow's own bomb guard (a process-wide setting: a warning above 89 Mpx, an error above 179 Mpx by
    default) would refuse the 200 MP photos this check admits, in every decoder that runs after it; it is raised
    to our budget (never lowered), so that the header check here is the one that decides."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
