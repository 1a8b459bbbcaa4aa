"""The `faces` Triton model for direct clients: batches, padding, empty outputs, per-request errors (on the
stand-in detector where the licensed one is absent)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.e2e.faces.conftest import Samples
from tests.harness import TritonHarness

pytestmark = pytest.mark.e2e

OUTPUTS = ("boxes", "scores", "landmarks", "embeddings", "count")


def infer(client: triton_http.InferenceServerClient, images: list[bytes], min_score: float = 0.65) -> dict:
    data = np.array([[image] for image in images], dtype=np.object_)
    scores = np.full((len(images), 1), min_score, np.float32)
    inputs = [
        triton_http.InferInput("image_bytes", list(data.shape), "BYTES"),
        triton_http.InferInput("min_score", list(scores.shape), "FP32"),
    ]
    inputs[0].set_data_from_numpy(data, binary_data=True)
    inputs[1].set_data_from_numpy(scores, binary_data=True)
    outputs = [triton_http.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
    result = client.infer("faces", inputs, outputs=outputs)
    return {name: result.as_numpy(name) for name in OUTPUTS}


def test_one_request_with_three_images_is_padded_with_counts(
    triton: TritonHarness, faces_models: Path, samples: Samples
) -> None:
    many = samples.many_count
    with triton.client() as client:
        out = infer(client, [samples.many, samples.none, samples.one])
    assert out["count"].ravel().tolist() == [many, 0, 1]
    assert out["boxes"].shape == (3, many, 4)
    assert out["landmarks"].shape == (3, many, 5, 2)
    assert out["embeddings"].shape == (3, many, 512)
    assert not out["boxes"][1].any() and not out["embeddings"][2, 1:].any()  # padding is zeros


def test_no_face_gives_correctly_shaped_empty_outputs(
    triton: TritonHarness, faces_models: Path, samples: Samples
) -> None:
    with triton.client() as client:
        out = infer(client, [samples.none])
    assert out["boxes"].shape == (1, 0, 4)
    assert out["scores"].shape == (1, 0)
    assert out["landmarks"].shape == (1, 0, 5, 2)
    assert out["embeddings"].shape == (1, 0, 512)
    assert out["count"].tolist() == [[0]]


def test_a_bad_request_fails_alone_among_concurrent_ones(
    triton: TritonHarness, faces_models: Path, samples: Samples
) -> None:
    one = samples.one
    uploads = [one, b"not an image", one, samples.many, b"", one]

    def call(data: bytes) -> object:
        with triton.client() as client:
            try:
                return int(infer(client, [data])["count"][0, 0])
            except InferenceServerException as error:
                return str(error)

    with ThreadPoolExecutor(len(uploads)) as pool:
        results = list(pool.map(call, uploads))
    assert results[0] == results[2] == results[5] == 1
    assert results[3] == samples.many_count
    assert "invalid_image" in results[1] and "invalid_image" in results[4]
