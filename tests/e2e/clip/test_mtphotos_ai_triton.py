"""mt-photos-ai's Chinese-CLIP files end to end: `export clip --from DIR` on stand-ins with the official
interface, the real Triton server, the adapter over HTTP, and the answers mt-photos-ai gives for the same files.

The reference is mt-photos-ai's own code transcribed (mt_photos_triton/reference/mtphotos_ai.py) running the two
ONNX files of DIR in onnxruntime in-process: its answer strings must be ours, character for character.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from export.clip import CLIP_MODELS, IMAGE, TEXT, export
from export.clip_mtphotos import MODEL_NAME
from mt_photos_triton.reference.mtphotos_ai import Service
from tests.cnclip_support import cnclip_vocab, mtphotos_dir  # noqa: F401 - fixtures
from tests.e2e.clip.conftest import encode, photo
from tests.e2e.clip.test_clip_triton import bytes_input, sample_images, triton_embed
from tests.e2e.service.support import png_claiming
from tests.harness import TritonHarness, settled_statistics

pytestmark = pytest.mark.e2e

KEY = {"api-key": "mt_photos_ai_extra"}
QUERIES = ["红色", "一只在海边的猫", "a photo of a red cat", "猫 and 狗 在海边 🐱", "Café naïve", "", "   ", "词" * 80,
           "a\x00b\u200bc"]
CONCURRENT = 8
DIM = 512


@pytest.fixture(scope="module")
def mtphotos_served(triton: TritonHarness, mtphotos_dir: Path) -> Iterator[Path]:
    """The stand-in directory exported by the real export (recognised by its files) and both ensembles loaded."""
    triton.install_committed(*CLIP_MODELS)
    result = export(repository=triton.repository, model=None, source=str(mtphotos_dir), force=True)
    assert result.model == MODEL_NAME
    triton.load(IMAGE, TEXT)
    yield mtphotos_dir
    triton.unload(IMAGE, TEXT, *CLIP_MODELS)


@pytest.fixture(scope="module")
def mt_adapter(mtphotos_served: Path, adapter_factory: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    """An adapter of its own: it reads the served profile when it first answers (a session adapter may have read
    another export's)."""
    with adapter_factory() as url:
        yield url


def uploads(fixtures: Path) -> dict[str, bytes]:
    images = dict(sample_images(fixtures))
    images["cmyk.jpg"] = encode(photo(120, 80, 5).convert("CMYK"), "JPEG")
    images["palette.png"] = encode(photo(70, 90, 6).convert("P"), "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    images["exif-6.jpg"] = encode(photo(200, 120, 7), "JPEG", exif=exif)
    images["tiny.png"] = encode(photo(2, 3, 8), "PNG")
    images["wide.jpg"] = encode(photo(1500, 60, 9), "JPEG")
    return images


def test_routes_answer_mt_photos_ai_s_strings(mt_adapter: str, mtphotos_served: Path, fixtures: Path) -> None:
    reference = Service(mtphotos_served)
    with httpx.Client(base_url=mt_adapter, headers=KEY, timeout=60) as http:
        for name, data in uploads(fixtures).items():
            body = http.post("/clip/img", files={"file": (name, data, "application/octet-stream")}).json()
            assert body == reference.clip_img(data), name
            assert len(body["result"]) == DIM
        for query in QUERIES:
            body = http.post("/clip/txt", json={"text": query}).json()
            assert body == reference.clip_txt(query), repr(query)
    print(f"\n/clip/img on {len(uploads(fixtures))} uploads and /clip/txt on {len(QUERIES)} queries: "
          "strings identical to mt-photos-ai's")


def test_concurrent_uploads_are_batched_and_keep_their_strings(
    triton: TritonHarness, mt_adapter: str, mtphotos_served: Path
) -> None:
    reference = Service(mtphotos_served)
    images = [encode(photo(160 + 7 * i, 120, 40 + i), "JPEG") for i in range(CONCURRENT)]
    images[3] = b"not an image"
    texts = [f"第{i}只猫 cat {i}" for i in range(CONCURRENT)]

    async def run_all() -> tuple[list, list, int, int]:
        import tritonclient.http.aio as triton_aio

        client = triton_aio.InferenceServerClient(triton.url)
        before = (await client.get_inference_statistics("clip_visual"))["model_stats"][0]
        async with httpx.AsyncClient(base_url=mt_adapter, headers=KEY, timeout=120) as http:
            image_bodies = asyncio.gather(*(http.post("/clip/img", files={"file": ("a.jpg", data, "image/jpeg")})
                                            for data in images))
            text_bodies = asyncio.gather(*(http.post("/clip/txt", json={"text": text}) for text in texts))
            answered = await asyncio.gather(image_bodies, text_bodies)
        after = await settled_statistics(client, "clip_visual", before, CONCURRENT - 1)
        await client.close()
        return (*([r.json() for r in group] for group in answered),
                *(int(after[k]) - int(before[k]) for k in ("execution_count", "inference_count")))

    image_bodies, text_bodies, runs, inferences = asyncio.run(run_all())
    print(f"\n{CONCURRENT} concurrent /clip/img (one invalid): {inferences} images in {runs} encoder runs")
    assert image_bodies[3] == {"result": [], "msg": "Invalid image format"}
    for index, body in enumerate(image_bodies):
        if index != 3:
            assert body == reference.clip_img(images[index]), index
    for text, body in zip(texts, text_bodies):
        assert body == reference.clip_txt(text), text
    assert inferences == CONCURRENT - 1


def test_a_request_may_carry_a_batch(triton: TritonHarness, mtphotos_served: Path) -> None:
    images = [encode(photo(100 + 10 * i, 80, i), "PNG") for i in range(3)]
    together = triton_embed(triton, IMAGE, "image_bytes", images)
    alone = np.concatenate([triton_embed(triton, IMAGE, "image_bytes", [i]) for i in images])
    assert together.shape == alone.shape == (3, DIM)
    assert np.abs(together - alone).max() <= 1e-5
    texts = [q.encode() for q in QUERIES[:3]]
    client = triton.client()
    try:
        together = client.infer(TEXT, [bytes_input(texts, "text")]).as_numpy("embedding")
    finally:
        client.close()
    alone = np.concatenate([triton_embed(triton, TEXT, "text", [t]) for t in texts])
    assert np.abs(together - alone).max() <= 1e-5


def test_errors_and_limits_are_every_route_s(mt_adapter: str, mtphotos_served: Path) -> None:
    with httpx.Client(base_url=mt_adapter, headers=KEY, timeout=60) as http:
        for data in (b"garbage", b"", encode(photo(40, 30, 1).convert("P"), "GIF")):  # OpenCV decodes no GIF
            assert http.post("/clip/img", files={"file": ("x", data, "image/gif")}).json() == {
                "result": [], "msg": "Invalid image format"}
        assert http.post("/clip/img", files={"file": ("b.png", png_claiming(60000, 60000), "image/png")}).json() == {
            "result": [], "msg": "height or width out of range"}
        wide = encode(Image.new("RGB", (10001, 2)), "PNG")  # no side limit on /clip/img
        assert len(http.post("/clip/img", files={"file": ("w.png", wide, "image/png")}).json()["result"]) == DIM
        assert http.post("/clip/txt", json={}).status_code == 422
        assert http.post("/clip/txt", json={"text": 5}).status_code == 422
        assert http.post("/clip/img", headers={"api-key": "wrong"}).status_code == 401
