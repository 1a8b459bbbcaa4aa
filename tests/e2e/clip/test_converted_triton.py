"""A converted transformers checkpoint end to end: a tiny SigLIP (40-d embeddings, bilinear `exact` resize, no
attention mask) and a tiny CLIP (24-d, transformers' shortest-side crop, ids + mask) exported by `export clip
--from DIR` into the session's Triton, then `/clip/img` and `/clip/txt` over HTTP against transformers' own
embeddings in torch (the checkpoint's image processor and tokenizer making its inputs), and the name export gave
the model in the served-model records (the console's rows) beside readiness."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from export.clip import IMAGE, TEXT, export
from tests.e2e.clip.conftest import CLIP_MODELS, encode, photo
from tests.harness import TritonHarness
from tests.unit.export.clip_checkpoints import DIMS, IMAGE_SIZE, build

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

pytestmark = pytest.mark.e2e

KEY = {"api-key": "mt_photos_ai_extra"}
TOLERANCE = 1e-5
QUERIES = ["a photo of a red cat", "sunset at the beach", "红色的花"]


@pytest.fixture(scope="module", params=["siglip", "clip"])
def converted(request, triton: TritonHarness, adapter_factory, tmp_path_factory) -> Iterator[tuple[str, Path, str]]:
    """The model exported and loaded, and an adapter of its own (one that outlives a reload keeps the records
    it read of the model served before)."""
    kind = request.param
    checkpoint = build(kind, tmp_path_factory.mktemp(f"converted-{kind}") / "checkpoint", seed=7)
    triton.install_committed(*CLIP_MODELS)
    export(repository=triton.repository, model=f"tiny-{kind}-converted", source=str(checkpoint), force=True)
    triton.load(IMAGE, TEXT)
    with adapter_factory() as url:
        yield kind, checkpoint, url
    triton.unload(IMAGE, TEXT, *CLIP_MODELS)


def _vector(response: httpx.Response) -> np.ndarray:
    body = response.json()
    assert response.status_code == 200 and "result" in body, body
    return np.array([float(v) for v in body["result"]], dtype=np.float64)


def _reference(kind: str, checkpoint: Path):
    model = transformers.AutoModel.from_pretrained(str(checkpoint)).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(str(checkpoint), use_fast=False)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
    length = 16 if kind == "siglip" else 77
    return model, processor, tokenizer, length


def test_clip_img_serves_transformers_image_embeddings(converted) -> None:
    kind, checkpoint, adapter_url = converted
    model, processor, _, _ = _reference(kind, checkpoint)
    worst = 0.0
    for seed, (width, height) in enumerate(((120, 80), (50, 90), (IMAGE_SIZE, IMAGE_SIZE))):
        data = encode(photo(width, height, seed), "PNG")
        pixels = processor(images=Image.open(io.BytesIO(data)).convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            want = model.get_image_features(pixel_values=pixels)[0].numpy()
        want = want / np.linalg.norm(want)
        got = _vector(httpx.post(f"{adapter_url}/clip/img", files={"file": ("p.png", data, "image/png")},
                                 headers=KEY, timeout=30))
        assert got.shape == (DIMS[kind],)
        worst = max(worst, float(np.abs(got - want).max()))
    print(f"\n{kind}: /clip/img vs transformers in torch: max abs diff {worst:.3g}")
    assert worst <= TOLERANCE


def test_clip_txt_serves_transformers_text_embeddings(converted) -> None:
    kind, checkpoint, adapter_url = converted
    model, _, tokenizer, length = _reference(kind, checkpoint)
    tokens = tokenizer(QUERIES, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    inputs = {"input_ids": tokens["input_ids"]}
    if kind != "siglip":
        inputs["attention_mask"] = tokens["attention_mask"]
    with torch.no_grad():
        want = model(**inputs, pixel_values=torch.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE))).text_embeds.numpy()
    worst = 0.0
    for query, expected in zip(QUERIES, want):
        got = _vector(httpx.post(f"{adapter_url}/clip/txt", json={"text": query}, headers=KEY, timeout=30))
        assert got.shape == (DIMS[kind],)
        worst = max(worst, float(np.abs(got - expected).max()))
    print(f"\n{kind}: /clip/txt vs transformers in torch: max abs diff {worst:.3g}")
    assert worst <= TOLERANCE


def test_ready_and_the_served_records_name_the_converted_model(converted) -> None:
    kind, _, adapter_url = converted
    ready = httpx.get(f"{adapter_url}/health/ready", timeout=30).json()
    assert ready["families"]["clip"] == "ready", ready
    rows = {row["name"]: row for row in httpx.get(f"{adapter_url}/console/status", timeout=30).json()["models"]}
    for entry in (IMAGE, TEXT):
        assert rows[entry]["served_model"] == f"tiny-{kind}-converted"
        assert rows[entry]["embedding_size"] == DIMS[kind]
