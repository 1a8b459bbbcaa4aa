"""M-CLIP end to end: a text encoder taking `input_ids` + `attention_mask`, wired by export from its graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http

from mt_photos_triton.reference.clip_standins import StandInSpec, TowerSize
from mt_photos_triton.repository import read_config
from tests.harness import TritonHarness
from tests.parity.clip.reference import ReferenceTokenizer

pytestmark = pytest.mark.e2e

SPEC = StandInSpec(image_size=40, patch_size=10, visual=TowerSize(48, 2, 4), text=TowerSize(48, 2, 4), embed_dim=20,
                   mclip=True, seed=7)
MIN_COSINE = 0.99999
QUERIES = ["a photo of a red cat", "红色", "蓝色的海边日落 🌅", "  spaced\u3000out\n text ", "", "long " * 100]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_export_wires_both_inputs(triton: TritonHarness, clip_served: Path) -> None:
    tokenize = read_config(triton.repository / "clip_tokenize")
    textual = read_config(triton.repository / "clip_textual")
    assert [o.name for o in tokenize.output] == ["input_ids", "attention_mask"]
    assert [i.name for i in textual.input] == ["input_ids", "attention_mask"]
    assert list(textual.output[0].dims) == [20]


def test_mclip_text_embeddings_equal_the_onnx_file_on_reference_tokens(triton: TritonHarness, clip_served: Path) -> None:
    session = ort.InferenceSession(str(clip_served / "textual" / "model.onnx"), providers=["CPUExecutionProvider"])
    reference = ReferenceTokenizer(clip_served, mclip=True)
    client = triton.client()
    worst = 1.0
    try:
        for query in QUERIES:
            want = session.run(None, reference(query))[0][0]
            tensor = triton_http.InferInput("text", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[query.encode()]], dtype=np.object_), binary_data=True)
            got = client.infer("clip_text", [tensor]).as_numpy("embedding")[0]
            assert got.shape == want.shape == (20,)
            worst = min(worst, cosine(got, want))
    finally:
        client.close()
    print(f"\nM-CLIP clip_text via Triton vs the ONNX file on reference tokens: min cosine = {worst:.8f}")
    assert worst >= MIN_COSINE
