"""The two-thread resize of a lone photo gives the very bytes of Pillow's one-call resize and centre crop."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from mt_photos_triton.pipelines import clip
from mt_photos_triton.pipelines.clip import (
    crop_centre, hf_shortest_side_size, resize_crop_in_halves, resize_shortest, shortest_side_size,
)

# landscape, portrait, square, the common camera and phone sizes, upscaled tiny ones, one-pixel-thin ones, sides
# already at the target (one pass only), odd halves
IMAGE_SIZES = [
    (1280, 960), (960, 1280), (4032, 3024), (1170, 2532), (1920, 1080), (500, 9999),
    (224, 224), (225, 224), (224, 1000), (1000, 224), (257, 257), (333, 257),
    (100, 80), (3, 5), (1, 1), (1, 500), (500, 1), (2, 3), (7, 400),
]
TARGETS = [224, 240, 3, 2, 1]
# the filters and side rules of the CLIP profiles (pipelines/clip_profile.py)
FILTERS = [(Image.Resampling.BICUBIC, shortest_side_size), (Image.Resampling.BILINEAR, shortest_side_size),
           (Image.Resampling.BICUBIC, hf_shortest_side_size)]


@pytest.fixture(scope="module")
def helper():
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.mark.parametrize("width,height", IMAGE_SIZES, ids=[f"{w}x{h}" for w, h in IMAGE_SIZES])
def test_split_resize_equals_pillows_resize_and_crop(width: int, height: int, helper: ThreadPoolExecutor) -> None:
    rng = np.random.default_rng(width * 10007 + height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    for size in TARGETS:
        for resample, sides in FILTERS:
            want = np.asarray(crop_centre(resize_shortest(image, size, resample, sides), size))
            got = np.asarray(resize_crop_in_halves(image, size, helper, resample, sides))
            assert got.shape == want.shape == (size, size, 3)
            differing = int((got != want).sum())
            assert differing == 0, f"{width}x{height} -> {size} ({resample.name}, {sides.__name__}): {differing} differ"


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_only_images_up_to_the_split_limit_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The split copies the image in halves, so an image above SPLIT_MAX_PIXELS is resized in one call (the same
    bytes either way)."""
    monkeypatch.setattr(clip, "SPLIT_MAX_PIXELS", 300 * 200)
    transform = clip.ImageTransform(224, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    rng = np.random.default_rng(7)
    for (width, height), splits in (((300, 200), True), ((301, 200), False)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        with CountingExecutor() as helper:
            got = transform.from_image(image, helper)
            assert (helper.submitted > 0) is splits, (width, height, helper.submitted)
        assert np.array_equal(got, transform.from_image(image)), (width, height)
