"""The `ocr` model as a direct Triton client sees it: batches, padding, empty outputs, per-request errors."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tritonclient.utils import InferenceServerException

from mt_photos_triton.errors import parse_code
from mt_photos_triton.reference.ocr_images import encode, text_page
from tests.harness import TritonHarness
from tests.ocr_support import SOURCES, infer_ocr, samples

pytestmark = pytest.mark.e2e


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def texts_of(outputs: dict[str, np.ndarray], row: int) -> list[str]:
    count = int(outputs["count"][row, 0])
    return [t.decode() for t in outputs["texts"][row, :count]]


@pytest.mark.parametrize("source", SOURCES)
def test_one_request_with_several_images_is_padded_with_counts(
    ocr_triton: TritonHarness, fixtures: Path, source: str
) -> None:
    sample = samples(source, fixtures)
    page, line = sample["page"], sample["line"]
    images = [page.data, line.data, png(Image.new("RGB", (20, 20)))]
    client = ocr_triton.client()
    try:
        outputs = infer_ocr(client, images)
    finally:
        client.close()
    width = len(page.lines)
    assert outputs["count"].ravel().tolist() == [width, 1, 0]
    assert outputs["texts"].shape == (3, width)
    assert outputs["scores"].shape == (3, width) and outputs["scores"].dtype == np.float32
    assert outputs["boxes"].shape == (3, width, 4, 2) and outputs["boxes"].dtype == np.float32
    assert texts_of(outputs, 0) == list(page.lines)
    assert texts_of(outputs, 1) == list(line.lines)
    assert not outputs["boxes"][1, 1:].any() and not outputs["boxes"][2].any()


def test_no_text_gives_empty_outputs_of_the_right_shape(ocr_triton: TritonHarness) -> None:
    client = ocr_triton.client()
    try:
        outputs = infer_ocr(client, [png(Image.new("RGB", (200, 100), "white"))])
    finally:
        client.close()
    assert outputs["count"].tolist() == [[0]]
    assert outputs["texts"].shape == (1, 0)
    assert outputs["boxes"].shape == (1, 0, 4, 2)


@pytest.mark.parametrize("source", SOURCES)
def test_concurrent_requests_each_get_their_own_answer_or_error(
    ocr_triton: TritonHarness, fixtures: Path, source: str
) -> None:
    """Sent together, the requests share executes (dynamic batching); the bad one fails alone."""
    sample = samples(source, fixtures)
    line, other = sample["line"], sample["other line"]
    uploads = [line.data, b"not an image", other.data] * 3

    def call(data: bytes) -> list[str] | str:
        client = ocr_triton.client()
        try:
            return texts_of(infer_ocr(client, [data]), 0)
        except InferenceServerException as error:
            return str(error.message())
        finally:
            client.close()

    with ThreadPoolExecutor(len(uploads)) as pool:
        answers = list(pool.map(call, uploads))
    for index, answer in enumerate(answers):
        if index % 3 == 0:
            assert answer == list(line.lines)
        elif index % 3 == 1:
            assert isinstance(answer, str) and "invalid_image: " in answer
        else:
            assert answer == list(other.lines)


@pytest.mark.parametrize("source", SOURCES)
def test_images_of_one_execute_share_recogniser_calls_and_get_their_own_rows(
    ocr_triton: TritonHarness, fixtures: Path, source: str
) -> None:
    """Equal recogniser widths of all images of an execute are concatenated and cut into calls of
    `recognizer_rows_per_call` rows, across image boundaries: each image must still get exactly its own lines."""
    sample = samples(source, fixtures)
    page, line = sample["page"], sample["line"]
    client = ocr_triton.client()
    try:
        alone = {name: infer_ocr(client, [item.data]) for name, item in (("page", page), ("line", line))}
        together = infer_ocr(client, [page.data, line.data, page.data])
    finally:
        client.close()
    for row, name in enumerate(["page", "line", "page"]):
        single = alone[name]
        count = int(single["count"][0, 0])
        assert count == len(sample[name].lines)
        assert int(together["count"][row, 0]) == count
        assert texts_of(together, row) == texts_of(single, 0) == list(sample[name].lines)
        assert np.array_equal(together["boxes"][row, :count], single["boxes"][0])
        assert np.allclose(together["scores"][row, :count], single["scores"][0], atol=1e-5)


def test_a_failed_model_call_answers_the_generic_error_and_logs_its_traceback(ocr_triton: TritonHarness) -> None:
    """With the recogniser gone, its BLS call fails: the client reads the one policy's generic message (no text of
    the downstream error), the server log has the traceback, and the next request is served again."""
    data = encode(text_page(("MovieShots Dataset",), 40, 640), "PNG")
    client = ocr_triton.client()
    try:
        ocr_triton.unload("ocr_rec")
        deadline = time.monotonic() + 30
        while client.is_model_ready("ocr_rec") and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            with pytest.raises(InferenceServerException) as caught:
                infer_ocr(client, [data])
        finally:
            ocr_triton.load("ocr_rec")
        assert texts_of(infer_ocr(client, [data]), 0) == ["MovieShots Dataset"]
    finally:
        client.close()
    message = str(caught.value.message())
    assert "ocr: internal error (BlsError)" in message
    assert "ocr_rec" not in message and parse_code(message) is None
    log = ocr_triton.server.log_tail(200)
    assert "ocr: a request failed" in log and "Traceback" in log and "BlsError: ocr_rec: " in log
