"""Small CLIP encoders with immich's interfaces, exported by the real export code into the session's Triton."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.clip import IMAGE, PREPROCESS, TEXT, TEXTUAL, TOKENIZE, VISUAL, export
from mt_photos_triton.reference.clip_standins import TORCH_MHA, StandInSpec, TowerSize, write_immich_layout
from tests.harness import TritonHarness

CLIP_MODELS = (PREPROCESS, VISUAL, IMAGE, TOKENIZE, TEXTUAL, TEXT)
# big enough to be a real network (2 layers, 4 heads, 40 px images in 10 px patches), small enough for CI; the
# visual tower's attention is traced the way open_clip's is (batch folded into other axes: the layout rewrite)
SMALL = StandInSpec(image_size=40, patch_size=10, visual=TowerSize(48, 2, 4, TORCH_MHA), text=TowerSize(48, 2, 4),
                    embed_dim=24)


@pytest.fixture(scope="module")
def clip_served(
    request: pytest.FixtureRequest, triton: TritonHarness, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Export the module's stand-in (SPEC in the test module) from a local directory and load both ensembles;
    yields the immich-layout directory (the reference runs its files directly)."""
    spec: StandInSpec = getattr(request.module, "SPEC", SMALL)
    source = write_immich_layout(tmp_path_factory.mktemp("clip-model") / "stand-in", spec)
    triton.install_committed(*CLIP_MODELS)
    export(repository=triton.repository, model=None, source=str(source), force=True)
    triton.load(IMAGE, TEXT)
    yield source
    triton.unload(IMAGE, TEXT, *CLIP_MODELS)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth gradient with noise: resampling differences would show on it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x ^ y) & 255], axis=-1)
    return Image.fromarray(np.clip(base + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8))
