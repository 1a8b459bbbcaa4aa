"""Opt-in: the real default model (`XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k`) means what it should.

Real CLIP weights cannot be downloaded in CI (and the shared fixtures carry none). Put immich's files of the
default model (config.json, visual/, textual/) in a directory and point CLIP_REAL_MODEL_DIR at it, or leave
them at $MT_PHOTOS_CACHE/clip/<name>/<commit> where `mt-photos-triton export clip` downloads them; then
`pytest -m realmodel tests/e2e/clip` exports them with the real export and asks the adapter over HTTP.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from export.clip import CLIP_MODELS, DEFAULT_MODEL, IMAGE, TEXT, cache_dir, export
from tests.harness import TritonHarness

pytestmark = [pytest.mark.e2e, pytest.mark.realmodel]

KEY = {"api-key": "mt_photos_ai_extra"}
REQUIRED = ["config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx",
            "textual/tokenizer.json", "textual/tokenizer_config.json"]


def real_model_dir() -> Path | None:
    candidates = []
    if os.environ.get("CLIP_REAL_MODEL_DIR"):
        candidates.append(Path(os.environ["CLIP_REAL_MODEL_DIR"]))
    candidates += sorted((cache_dir() / DEFAULT_MODEL).glob("*"))
    return next((c for c in candidates if all((c / f).is_file() for f in REQUIRED)), None)


@pytest.fixture(scope="module")
def real_model(request: pytest.FixtureRequest) -> Path:
    directory = real_model_dir()
    if directory is None:
        pytest.skip(
            f"real CLIP model files not present: set CLIP_REAL_MODEL_DIR to a directory with immich's "
            f"{DEFAULT_MODEL} files ({', '.join(REQUIRED)}); they cannot be downloaded here"
        )
    triton: TritonHarness = request.getfixturevalue("triton")  # started only when there is something to test
    triton.install_committed(*CLIP_MODELS)
    result = export(repository=triton.repository, model=DEFAULT_MODEL, source=str(directory), force=True)
    print("\n" + result.summary())
    triton.load(IMAGE, TEXT)
    yield directory
    triton.unload(IMAGE, TEXT, *CLIP_MODELS)


def vector(http: httpx.Client, route: str, **request: object) -> np.ndarray:
    body = http.post(route, **request).json()
    assert len(body["result"]) == 512, body
    return np.array(body["result"], dtype=np.float64)


def test_a_red_square_is_nearer_red_than_blue(real_model: Path, adapter_url: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), (220, 20, 30)).save(buffer, "PNG")
    with httpx.Client(base_url=adapter_url, headers=KEY, timeout=120) as http:
        image = vector(http, "/clip/img", files={"file": ("red.png", buffer.getvalue(), "image/png")})
        scores = {word: float(image @ vector(http, "/clip/txt", json={"text": word}))
                  for word in ["红色", "蓝色", "red", "blue"]}
    print(f"\nreal {DEFAULT_MODEL}: red square vs texts: {scores}")
    assert scores["红色"] > scores["蓝色"]
    assert scores["red"] > scores["blue"]
