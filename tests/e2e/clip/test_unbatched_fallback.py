"""Encoders neither rewrite (constants, folded layout) can batch: wrapped in a Scan (batched), or served with a batch
of 1."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from export.clip import CLIP_MODELS, IMAGE, TEXT, export
from mt_photos_triton.reference.clip_standins import StandInSpec, write_immich_layout
from mt_photos_triton.repository import read_config
from tests.e2e.clip.conftest import encode, photo
from tests.harness import TritonHarness
from tests.parity.clip.reference import reference_model_image_input
from tests.unit.clip.test_export import folded_batch_visual

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("opset", "max_batch"), [(17, 16), (11, 1)], ids=["scan-wrapped", "batch-of-one"])
def test_fallbacks_serve_through_the_ensemble(triton: TritonHarness, tmp_path: Path, opset: int, max_batch: int) -> None:
    import onnxruntime as ort

    source = write_immich_layout(tmp_path / "folded", StandInSpec())
    folded_batch_visual(source / "visual" / "model.onnx", opset=opset)
    triton.install_committed(*CLIP_MODELS)
    result = export(repository=triton.repository, model=None, source=str(source), force=True)
    assert read_config(triton.repository / "clip_image").max_batch_size == max_batch, result.notes
    triton.load(IMAGE, TEXT)
    try:
        images = [encode(photo(64, 48 + i, i), "PNG") for i in range(min(3, max_batch))]
        tensor = triton_http.InferInput("image_bytes", [len(images), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[d] for d in images], dtype=np.object_), binary_data=True)
        client = triton.client()
        got = client.infer(IMAGE, [tensor]).as_numpy("embedding")
        client.close()
        session = ort.InferenceSession(str(source / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
        want = np.concatenate([session.run(None, {"input.1": reference_model_image_input(d, source)})[0] for d in images])
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5
    finally:
        triton.unload(IMAGE, TEXT, *CLIP_MODELS)
        shutil.rmtree(source, ignore_errors=True)
