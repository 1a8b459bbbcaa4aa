"""The `ocr` model with immich's per-request options against immich-ml's own answer (RapidOCR 3.10.0 configured
as immich-ml v2.5.6 configures it from a request's options), on the fixture images and the same PP-OCRv5 weights:
immich's defaults (detection minScore 0.5, maxResolution 736, recognition minScore 0.8) and other values."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from mt_photos_triton.pipelines.ocr_detection import decode_image
from mt_photos_triton.reference.ocr_images import parity_images
from tests.harness import TritonHarness
from tests.ocr_support import ocr_images
from tests.parity.ocr.test_parity import reference_ocr

pytestmark = pytest.mark.parity

MAX_BOX_DIFFERENCE_PX = 2.0
MAX_SCORE_DIFFERENCE = 0.02
CONCURRENCY = 4
OUTPUTS = ("texts", "scores", "boxes", "count", "box_scores", "reading_order", "image_size")
IMMICH_DEFAULTS = (0.5, 736, 0.8)  # what immich's server sends (machine-learning.repository.ts `ocr`)


def infer_with_options(
    client: triton_http.InferenceServerClient, data: bytes, det_min_score: float, max_resolution: int, rec_min_score: float
) -> dict[str, np.ndarray]:
    inputs = []
    for name, kind, value in (("image_bytes", "BYTES", np.array([[data]], dtype=np.object_)),
                              ("box_threshold", "FP32", np.array([[det_min_score]], dtype=np.float32)),
                              ("max_resolution", "INT32", np.array([[max_resolution]], dtype=np.int32)),
                              ("min_text_score", "FP32", np.array([[rec_min_score]], dtype=np.float32))):
        item = triton_http.InferInput(name, list(value.shape), kind)
        item.set_data_from_numpy(value, binary_data=True)
        inputs.append(item)
    result = client.infer("ocr", inputs, outputs=[triton_http.InferRequestedOutput(n, binary_data=True) for n in OUTPUTS])
    return {name: result.as_numpy(name) for name in OUTPUTS}


def immich_lines(out: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Our lines in immich's reading order: texts, boxes normalised [N,4,2], text scores, box scores."""
    n = int(out["count"][0, 0])
    order = np.argsort(out["reading_order"][0, :n], kind="stable")
    width, height = out["image_size"][0]
    boxes = out["boxes"][0, :n][order] / np.array([width, height], dtype=np.float32)
    texts = [out["texts"][0, i].decode() for i in order]
    return texts, boxes, out["scores"][0, :n][order], out["box_scores"][0, :n][order]


@pytest.mark.parametrize("options", [IMMICH_DEFAULTS, (0.6, 960, 0.9)], ids=["immich-defaults", "other-values"])
def test_the_ocr_model_answers_as_immich_ml_with_its_options(
    ocr_triton: TritonHarness, fixtures: Path, options: tuple[float, int, float]
) -> None:
    cases = [(p.name, p.read_bytes()) for p in sorted(ocr_images(fixtures).glob("*.[jp][pn]g"))]
    cases += list(parity_images(fixtures))
    reference = reference_ocr()

    def ours(data: bytes) -> dict[str, np.ndarray]:
        client = ocr_triton.client()
        try:
            return infer_with_options(client, data, *options)
        finally:
            client.close()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(ours, [data for _, data in cases]))

    lines = same = ordered = compared = looked_again = 0
    worst_box = worst_score = 0.0
    for (name, data), out in zip(cases, answers):
        image = decode_image(data)  # both read our pixels (EXIF turned, transparency on white: on purpose)
        expected = reference.immich_answer(image, *options)
        texts, boxes, scores, box_scores = immich_lines(out)
        assert tuple(out["image_size"][0]) == image.size
        if not expected["text"]:
            looked_again += bool(texts)  # our second look at half scale reads large lettering (compatibility.md)
            continue
        ref_boxes = expected["box"].reshape(-1, 4, 2)
        assert len(texts) == len(expected["text"]), (name, texts, expected["text"])
        lines += len(texts)
        ordered += texts == expected["text"]
        compared += 1
        size = np.array(image.size, dtype=np.float64)
        for text, box, score in zip(expected["text"], ref_boxes, expected["textScore"]):
            distances = [float(np.abs((b - box) * size).max()) for b in boxes]
            best = int(np.argmin(distances))
            worst_box = max(worst_box, distances[best])
            worst_score = max(worst_score, abs(float(scores[best]) - float(score)))
            same += texts[best] == text
        if len(expected["text"]) == len(reference.detect(image, options[1])[0]):  # nothing filtered out
            # immich pairs the detector's scores in detection order with boxes in reading order; ours are each
            # box's own: the same scores, perhaps in another order
            assert np.allclose(np.sort(box_scores), np.sort(expected["boxScore"]), atol=1e-6), name
    print(f"\nimmich options {options}: {len(cases)} images, {lines} lines, same text {same}, same order on "
          f"{ordered} of {compared} images, largest box difference {worst_box:.2f} px, largest text score difference "
          f"{worst_score:.5f}; read where immich reads nothing (second look): {looked_again}")
    assert lines >= 30 and same == lines and ordered == compared, "immich's reading order, every line alike"
    assert worst_box <= MAX_BOX_DIFFERENCE_PX and worst_score <= MAX_SCORE_DIFFERENCE
