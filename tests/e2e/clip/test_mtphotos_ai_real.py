"""Opt-in: mt-photos-ai's real Chinese-CLIP ViT-B-16 files mean what they should, and we answer as it does.

The two ONNX files are not in the fixtures and cannot be downloaded here. Copy them and vocab.txt out of the
mt-photos-ai container (README "Switching from mt-photos-ai") into a directory, point MTPHOTOS_AI_CLIP_DIR at it,
and run `pytest -m realmodel tests/e2e/clip/test_mtphotos_ai_real.py -s`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from export.clip import CLIP_MODELS, IMAGE, TEXT, export
from export.clip_mtphotos import FILES, MODEL_NAME
from mt_photos_triton.reference.mtphotos_ai import Service
from tests.harness import TritonHarness

pytestmark = [pytest.mark.e2e, pytest.mark.realmodel]

KEY = {"api-key": "mt_photos_ai_extra"}
DIR_ENV = "MTPHOTOS_AI_CLIP_DIR"


@pytest.fixture(scope="module")
def real_files(request: pytest.FixtureRequest) -> Iterator[Path]:
    directory = Path(os.environ[DIR_ENV]) if os.environ.get(DIR_ENV) else None
    if directory is None or not all((directory / name).is_file() for name in FILES):
        pytest.skip(f"mt-photos-ai's CLIP files not present: set {DIR_ENV} to a directory holding {', '.join(FILES)} "
                    "(copied out of the mt-photos-ai container); they cannot be downloaded here")
    triton: TritonHarness = request.getfixturevalue("triton")  # started only when there is something to test
    triton.install_committed(*CLIP_MODELS)
    result = export(repository=triton.repository, model=None, source=str(directory), force=True)
    print("\n" + result.summary())
    assert result.model == MODEL_NAME
    triton.load(IMAGE, TEXT)
    yield directory
    triton.unload(IMAGE, TEXT, *CLIP_MODELS)


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (224, 224), colour).save(buffer, "PNG")
    return buffer.getvalue()


def unit(body: dict) -> np.ndarray:
    vector = np.array(body["result"], dtype=np.float64)
    assert vector.shape == (512,), body
    return vector / np.linalg.norm(vector)


def test_real_files_answer_as_mt_photos_ai_and_mean_what_they_say(
    real_files: Path, adapter_factory: object
) -> None:
    reference = Service(real_files)
    red, green, blue = png((220, 20, 20)), png((20, 200, 20)), png((20, 20, 220))
    with adapter_factory() as url, httpx.Client(base_url=url, headers=KEY, timeout=120) as http:  # type: ignore[operator]
        images = {name: http.post("/clip/img", files={"file": (f"{name}.png", data, "image/png")}).json()
                  for name, data in (("red", red), ("green", green), ("blue", blue))}
        texts = {word: http.post("/clip/txt", json={"text": word}).json() for word in ("红色", "绿色", "蓝色")}
    assert images["red"] == reference.clip_img(red) and texts["红色"] == reference.clip_txt("红色")
    similarity = {(i, t): float(unit(images[i]) @ unit(texts[t])) for i in images for t in texts}
    print("\n" + "\n".join(f"{i} image · {t}: {s:.4f}" for (i, t), s in similarity.items()))
    # green keeps its channel through mt-photos-ai's BGR-as-RGB hand-over
    assert similarity[("green", "绿色")] > max(similarity[("green", "红色")], similarity[("green", "蓝色")])
    # red and blue trade places there: the model is fed a red upload as blue (kept, so stored vectors match)
    assert similarity[("red", "蓝色")] > similarity[("red", "红色")]
    assert similarity[("blue", "红色")] > similarity[("blue", "蓝色")]
