"""CLIP end to end through the real Triton server and the adapter over HTTP (single-`text` stand-in).

The reference is the same ONNX file immich ships (the stand-in's, batch 1) run directly by onnxruntime on
inputs made by the reference's own transform and tokeniser (tests/parity/clip/reference.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
import tritonclient.http.aio as triton_aio
from PIL import Image
from tritonclient.utils import InferenceServerException

from mt_photos_triton.pipelines.clip import format_embedding
from tests.e2e.clip.conftest import encode, photo
from tests.e2e.service.support import png_claiming
from tests.harness import TritonHarness, settled_statistics
from tests.parity.clip.reference import ReferenceTokenizer, reference_model_image_input, reference_result_strings

pytestmark = pytest.mark.e2e

MIN_COSINE = 0.99999
KEY = {"api-key": "mt_photos_ai_extra"}
QUERIES = ["a photo of a red cat", "红色", "蓝色的海边日落", "🐱 on the beach", "  spaced\u3000out\n text ", "", "x" * 400]
CONCURRENT = 8


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def sample_images(fixtures: Path) -> dict[str, bytes]:
    images = {
        "landscape.jpg": encode(photo(320, 200, 1), "JPEG", quality=90),
        "portrait.png": encode(photo(90, 170, 2), "PNG"),
        "rgba.png": encode(photo(64, 64, 3).convert("RGBA"), "PNG"),
        "gray.png": encode(photo(50, 80, 4).convert("L"), "PNG"),
    }
    for name in ["faces/astronaut.png", "faces/obama.jpg", "ocr/ch_en_num.jpg"]:
        path = fixtures / "images" / name
        if path.is_file():
            images[name] = path.read_bytes()
    return images


def bytes_input(items: list[bytes], name: str) -> triton_http.InferInput:
    array = np.array([[item] for item in items], dtype=np.object_)
    tensor = triton_http.InferInput(name, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def triton_embed(triton: TritonHarness, model: str, name: str, items: list[bytes]) -> np.ndarray:
    client = triton.client()
    try:
        return client.infer(model, [bytes_input(items, name)]).as_numpy("embedding")
    finally:
        client.close()


def test_image_embeddings_equal_the_onnx_file_on_reference_inputs(
    triton: TritonHarness, clip_served: Path, fixtures: Path
) -> None:
    session = ort.InferenceSession(str(clip_served / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    worst = 1.0
    for name, data in sample_images(fixtures).items():
        want = session.run(None, {"image": reference_model_image_input(data, clip_served)})[0][0]
        got = triton_embed(triton, "clip_image", "image_bytes", [data])[0]
        assert got.shape == want.shape, name
        worst = min(worst, cosine(got, want))
    print(f"\nclip_image via Triton vs the ONNX file on reference inputs: min cosine = {worst:.8f}")
    assert worst >= MIN_COSINE


def test_text_embeddings_equal_the_onnx_file_on_reference_tokens(triton: TritonHarness, clip_served: Path) -> None:
    session = ort.InferenceSession(str(clip_served / "textual" / "model.onnx"), providers=["CPUExecutionProvider"])
    reference = ReferenceTokenizer(clip_served)
    worst = 1.0
    for query in QUERIES:
        want = session.run(None, reference(query))[0][0]
        got = triton_embed(triton, "clip_text", "text", [query.encode()])[0]
        worst = min(worst, cosine(got, want))
    print(f"\nclip_text via Triton vs the ONNX file on reference tokens: min cosine = {worst:.8f}")
    assert worst >= MIN_COSINE


def test_one_request_may_carry_a_batch(triton: TritonHarness, clip_served: Path) -> None:
    images = [encode(photo(100 + 10 * i, 80, i), "JPEG") for i in range(3)]
    together = triton_embed(triton, "clip_image", "image_bytes", images)
    alone = np.concatenate([triton_embed(triton, "clip_image", "image_bytes", [i]) for i in images])
    assert together.shape == alone.shape == (3, 24)
    assert np.abs(together - alone).max() <= 1e-5
    texts = [q.encode() for q in QUERIES[:3]]
    together = triton_embed(triton, "clip_text", "text", texts)
    alone = np.concatenate([triton_embed(triton, "clip_text", "text", [t]) for t in texts])
    assert np.abs(together - alone).max() <= 1e-5


def test_concurrent_requests_are_batched_and_a_bad_one_fails_alone(triton: TritonHarness, clip_served: Path) -> None:
    images = [encode(photo(120, 90 + i, i), "JPEG") for i in range(CONCURRENT)]
    images[3] = b"this is not an image"

    async def run_all() -> tuple[list, int, int]:
        client = triton_aio.InferenceServerClient(triton.url)

        async def one(data: bytes) -> np.ndarray | Exception:
            tensor = triton_aio.InferInput("image_bytes", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[data]], dtype=np.object_), binary_data=True)
            try:
                return (await client.infer("clip_image", [tensor])).as_numpy("embedding")
            except InferenceServerException as error:
                return error

        try:
            before = (await client.get_inference_statistics("clip_visual"))["model_stats"][0]
            results = await asyncio.gather(*(one(i) for i in images))
            after = await settled_statistics(client, "clip_visual", before, CONCURRENT - 1)
        finally:
            await client.close()
        return results, *(int(after[k]) - int(before[k]) for k in ("execution_count", "inference_count"))

    results, runs, inferences = asyncio.run(run_all())
    print(f"\n{CONCURRENT} concurrent clip_image requests (one invalid): {inferences} images in {runs} encoder runs")
    assert isinstance(results[3], InferenceServerException)
    assert "invalid_image" in str(results[3])
    for index, result in enumerate(results):
        if index == 3:
            continue
        assert isinstance(result, np.ndarray), result
        alone = triton_embed(triton, "clip_image", "image_bytes", [images[index]])
        assert np.abs(result - alone).max() <= 1e-5
    assert inferences == CONCURRENT - 1


def test_adapter_routes_answer_the_reference_strings(
    triton: TritonHarness, adapter_url: str, clip_served: Path, fixtures: Path
) -> None:
    visual = ort.InferenceSession(str(clip_served / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    textual = ort.InferenceSession(str(clip_served / "textual" / "model.onnx"), providers=["CPUExecutionProvider"])
    data = sample_images(fixtures)["landscape.jpg"]
    with httpx.Client(base_url=adapter_url, headers=KEY, timeout=60) as http:
        body = http.post("/clip/img", files={"file": ("a.jpg", data, "image/jpeg")}).json()
        want = visual.run(None, {"image": reference_model_image_input(data, clip_served)})[0][0]
        assert len(body["result"]) == want.shape[0] == 24
        assert cosine(np.array(body["result"], dtype=np.float64), want) >= MIN_COSINE
        assert all(isinstance(v, str) and len(v.split(".")[1]) == 16 for v in body["result"])

        body = http.post("/clip/txt", json={"text": "红色"}).json()
        want = textual.run(None, ReferenceTokenizer(clip_served)("红色"))[0][0]
        assert cosine(np.array(body["result"], dtype=np.float64), want) >= MIN_COSINE
        served = triton_embed(triton, "clip_text", "text", ["红色".encode()])[0]
        assert body["result"] == format_embedding(served) == reference_result_strings(served)

        # errors of the spec
        assert http.post("/clip/img", files={"file": ("x.jpg", b"garbage", "image/jpeg")}).json() == {
            "result": [], "msg": "Invalid image format"}
        # no side limit on /clip/img (the reference has none); a bomb is refused from its header
        wide = encode(Image.new("RGB", (10001, 2)), "PNG")
        assert len(http.post("/clip/img", files={"file": ("w.png", wide, "image/png")}).json()["result"]) == 24
        bomb = png_claiming(60000, 60000)
        assert http.post("/clip/img", files={"file": ("b.png", bomb, "image/png")}).json() == {
            "result": [], "msg": "height or width out of range"}
        missing = http.post("/clip/txt", json={})
        assert missing.status_code == 422
        assert missing.json() == {"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required",
                                              "input": {}}]}
        assert http.post("/clip/img", data={"other": "x"}).status_code == 422
