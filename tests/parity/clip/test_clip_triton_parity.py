"""`clip_image` served by the real Triton server vs the reference's whole image path, bit for bit.

The reference side: the immich-transcribed input tensor (tests/parity/clip/reference.py) run by onnxruntime,
in this process, on the ONNX file as immich ships it (the stand-in's immich layout, batch 1), and its first
row taken (immich models/clip/visual.py:31). Our side: the upload's bytes through the `clip_image` ensemble
(decode + transform in the python model, then the exported, batchable encoder), one request at a time.
Both use the onnxruntime installed here (the Triton backend is python: mt_photos_triton/runtime/backends).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http

from tests.e2e.clip.conftest import clip_served  # noqa: F401 - the fixture: a stand-in exported and served
from tests.harness import TritonHarness
from tests.parity.clip.reference import reference_model_image_input
from tests.parity.clip.test_clip_parity import all_images

pytestmark = pytest.mark.parity

SERVED_ENCODER = Path("clip_visual") / "1" / "model.onnx"


def served_vector(triton: TritonHarness, data: bytes) -> np.ndarray:
    tensor = triton_http.InferInput("image_bytes", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=np.object_), binary_data=True)
    client = triton.client()
    try:
        return client.infer("clip_image", [tensor]).as_numpy("embedding")[0]
    finally:
        client.close()


def test_served_vectors_are_array_equal_to_the_onnx_file_on_reference_tensors(
    triton: TritonHarness, clip_served: Path, fixtures: Path  # noqa: F811 - pytest's fixture by its name
) -> None:
    shipped = ort.InferenceSession(str(clip_served / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = ort.InferenceSession(str(triton.repository / SERVED_ENCODER), providers=["CPUExecutionProvider"])
    images = all_images(fixtures)
    differing: dict[str, int] = {}
    exported_gap = 0.0
    for name, data in images.items():
        tensor = reference_model_image_input(data, clip_served)
        want = shipped.run(None, {"image": tensor})[0][0]
        got = served_vector(triton, data)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, name
        if not np.array_equal(got, want):
            differing[name] = int((got != want).sum())
        exported_gap = max(exported_gap, float(np.abs(exported.run(None, {"image": tensor})[0][0] - want).max()))
    print(f"\nclip_image via Triton array_equal to the shipped ONNX file run directly on the reference tensors: "
          f"{len(images) - len(differing)} of {len(images)} images (differing: {differing or 'none'}); "
          f"the exported encoder at batch 1 vs the shipped file: max |diff| {exported_gap:.3g}")
    assert not differing
