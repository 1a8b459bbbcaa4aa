"""The `ocr` GPU variant's bucketed path, forced on CPU: the variant's config (recogniser batches padded to the
width buckets) served as a second model beside today's `ocr`, on the same real PP-OCRv5 models, over the parity
pages (rendered, and the fixtures where present). The detector is not padded, so boxes are identical; the
recogniser sees zeros beyond a batch's width, as a narrow crop does in a wide batch, and its global mixing makes
a few lines differ (measured: docs/gpu.md)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tritonclient.http as triton_http
from google.protobuf import text_format

from export.configs import GPU_VARIANT, VARIANTS_DIR, render_config
from mt_photos_triton.reference.ocr_images import parity_images
from mt_photos_triton.repository import CONFIG_NAME, ModelConfig
from tests.harness import TritonHarness, fixtures_dir

pytestmark = pytest.mark.e2e

BUCKETED = "ocr_bucketed"
MIN_SAME_LINES = 0.97  # measured 134 of 136 lines (two pages differ by one line each: docs/gpu.md)
MAX_SCORE_DIFFERENCE = 0.03  # measured 0.021
MIN_CASES = 9  # the rendered pages alone


@pytest.fixture(scope="module")
def bucketed(ocr_triton: TritonHarness) -> TritonHarness:
    """`ocr_bucketed`: the `ocr` directory export wrote, serving its configs/gpu.pbtxt (on CPU: KIND_CPU as
    written; only the parameters differ)."""
    source = ocr_triton.repository / "ocr"
    target = ocr_triton.repository / BUCKETED
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source / "1", target / "1", ignore=shutil.ignore_patterns("__pycache__"))
    config = text_format.Parse((source / VARIANTS_DIR / f"{GPU_VARIANT}.pbtxt").read_text(), ModelConfig())
    assert "rec_width_buckets" in config.parameters
    config.name = BUCKETED
    (target / CONFIG_NAME).write_text(render_config(config))
    ocr_triton.load(BUCKETED)
    return ocr_triton


def _read(
    client: triton_http.InferenceServerClient, model: str, data: bytes
) -> tuple[list[str], np.ndarray, np.ndarray]:
    result = _infer(client, model, data)
    n = int(result["count"][0, 0])
    return [t.decode() for t in result["texts"][0, :n]], result["boxes"][0, :n], result["scores"][0, :n]


def _infer(client: triton_http.InferenceServerClient, model: str, data: bytes) -> dict[str, np.ndarray]:
    item = triton_http.InferInput("image_bytes", [1, 1], "BYTES")
    item.set_data_from_numpy(np.array([[data]], dtype=np.object_), binary_data=True)
    names = ("texts", "scores", "boxes", "count")
    result = client.infer(model, [item], outputs=[triton_http.InferRequestedOutput(n, binary_data=True) for n in names])
    return {name: result.as_numpy(name) for name in names}


def test_bucketed_recognition_reads_what_todays_path_reads(bucketed: TritonHarness) -> None:
    fixtures = fixtures_dir()
    cases = list(parity_images(fixtures if (fixtures / "images" / "ocr" / "en.jpg").is_file() else None))
    assert len(cases) >= MIN_CASES
    client = bucketed.client()
    lines = same = 0
    worst_score = 0.0
    differing = []
    try:
        for name, data in cases:
            texts, boxes, scores = _read(client, "ocr", data)
            padded_texts, padded_boxes, padded_scores = _read(client, BUCKETED, data)
            # the detector is sent the same inputs: the same lines in the same places
            assert len(texts) == len(padded_texts), name
            np.testing.assert_array_equal(boxes, padded_boxes, err_msg=name)
            lines += len(texts)
            same += sum(a == b for a, b in zip(texts, padded_texts))
            if texts != padded_texts:
                differing.append(name)
            agree = [i for i, (a, b) in enumerate(zip(texts, padded_texts)) if a == b]  # a changed text moves its score
            if agree:
                worst_score = max(worst_score, float(np.abs(scores[agree] - padded_scores[agree]).max()))
    finally:
        client.close()
    print(f"bucketed OCR: {len(cases)} pages, {same} of {lines} lines the same, worst score difference of "
          f"a line read the same {worst_score:.4f}; pages that differ: {', '.join(differing) or 'none'}")
    assert lines and same / lines >= MIN_SAME_LINES
    assert worst_score <= MAX_SCORE_DIFFERENCE


def test_warm_calls_the_recogniser_once_per_bucket(
    ocr_triton: TritonHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    from export.ocr_gpu import REC_WIDTH_BUCKETS
    from mt_photos_triton.bench import gpu as bench_gpu

    assert bench_gpu.warm(ocr_triton.url, rows=2) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warm: ocr_rec")]
    assert len(lines) == 2 * len(REC_WIDTH_BUCKETS.widths)
    assert all(f"x{width}:" in " ".join(lines) for width in REC_WIDTH_BUCKETS.widths)
