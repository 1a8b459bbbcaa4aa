"""The installed Pillow resizes as the reference's does: the CLIP transform's bicubic resize, written out in numpy.

The reference (immich machine-learning) pins pillow<11. Pillow 13 runs the vertical pass first when an image
shrinks much more in height than in width (Pillow#9549), which moves tall photos (phone screenshots, 9:19.5
portraits) by one grey level on 12-20% of their pixels: CLIP vectors a re-index would change. So the transform
is checked here against Pillow's two-pass fixed-point resampling as Pillow 10-12 run it, horizontal pass first,
independently of the Pillow that is installed (pyproject pins pillow<13).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from mt_photos_triton.pipelines.clip import resize_shortest

pytestmark = pytest.mark.parity

PRECISION_BITS = 32 - 8 - 2  # Pillow libImaging/Resample.c: fixed-point weights of 8-bit resampling
BICUBIC_A = -0.5
# (width, height): tall phone photos and screenshots, a tall narrow one, the wide mirrors, an upscale
SIZES = [(1170, 2532), (1440, 3200), (1000, 3000), (500, 3000), (2532, 1170), (1280, 960), (150, 100)]


def bicubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    near = ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * BICUBIC_A
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First source index [out] and fixed-point weights [out, taps] of every output index (Pillow
    `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole image: the same double operations)."""
    scale = float(np.float32(in_size)) / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    taps = int(math.ceil(support)) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    count = np.minimum((centre + support + 0.5).astype(np.int64), in_size) - first
    offsets = np.arange(taps)
    used = offsets[None, :] < count[:, None]
    distance = (offsets[None, :] + first[:, None] - centre[:, None] + 0.5) * (1.0 / filterscale)  # C: * ss
    raw = np.where(used, bicubic(distance), 0.0)
    total = np.cumsum(raw, axis=1)[:, -1:]  # added in order, as the C loop does
    normalised = np.where(total != 0.0, raw / np.where(total != 0.0, total, 1.0), raw)
    fixed = normalised * (1 << PRECISION_BITS)
    return first, np.where(used, np.where(normalised < 0, -0.5 + fixed, 0.5 + fixed), 0).astype(np.int64)


def resample(pixels: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass along `axis` of a uint8 [H, W, 3] array: int accumulators, rounding, clipped to 0..255."""
    first, fixed = weights(pixels.shape[axis], out_size)
    last = pixels.shape[axis] - 1
    shape = [1, 1, 1]
    shape[axis] = out_size
    total = np.full([out_size if a == axis else n for a, n in enumerate(pixels.shape)], 1 << (PRECISION_BITS - 1))
    for tap in range(fixed.shape[1]):
        taken = np.take(pixels, np.minimum(first + tap, last), axis=axis).astype(np.int64)
        total += taken * fixed[:, tap].reshape(shape)
    return np.clip(total >> PRECISION_BITS, 0, 255).astype(np.uint8)


def reference_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow (before 13) BICUBIC resize: the horizontal pass, then the vertical one on its uint8 result."""
    return resample(resample(pixels, size[0], axis=1), size[1], axis=0)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_clip_resize_is_the_reference_pillows(width: int, height: int) -> None:
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ours = np.asarray(resize_shortest(Image.fromarray(pixels), 224))
    expected = reference_resize(pixels, (ours.shape[1], ours.shape[0]))
    different = ours.astype(int) != expected.astype(int)
    assert not different.any(), f"{width}x{height}: {different.mean():.2%} of the values differ"
