"""The OCR maths on small synthetic inputs, against RapidOCR's own classes where they exist."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from export.ocr_configs import PIPELINE_PARAMETERS
from mt_photos_triton.errors import IMAGE_TOO_LARGE, INVALID_IMAGE, PipelineError
from mt_photos_triton.pipelines.ocr import OcrJob, OcrResult, pad_results, select_texts
from mt_photos_triton.pipelines.ocr_detection import (
    DBPostProcess,
    decode_image,
    detection_input,
    detection_size,
    reading_order,
)
from mt_photos_triton.pipelines.ocr_parameters import OcrParameters
from mt_photos_triton.pipelines.ocr_recognition import CTCDecoder, recognition_batches

PARAMS = OcrParameters.from_config({key: str(value) for key, value in PIPELINE_PARAMETERS.items()})


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_parameters_come_only_from_the_config() -> None:
    assert OcrParameters.from_config(PARAMS.as_config()) == PARAMS
    incomplete = {k: v for k, v in PARAMS.as_config().items() if k != "unclip_ratio"}
    with pytest.raises(KeyError, match="unclip_ratio"):
        OcrParameters.from_config(incomplete)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1280, 960), (992, 736)), ((323, 430), (320, 416)), ((976, 424), (960, 416)), ((4000, 3000), (992, 736))],
)
def test_detection_size_scales_the_shorter_side_down_to_736_never_up(size, expected) -> None:
    assert detection_size(*size, PARAMS) == expected


def test_detection_input_is_bgr_with_the_reference_normalisation() -> None:
    image = Image.new("RGB", (64, 64), (255, 0, 10))
    tensor = detection_input(image, PARAMS)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 0, 0], [(10 - 0.5) / 127.5, (0 - 0.5) / 127.5, (255 - 0.5) / 127.5], rtol=1e-6)


def probability_map() -> np.ndarray:
    """Three text-like blobs, one faint (below the box threshold), one tiny (below the size limit)."""
    prob = np.zeros((160, 320), dtype=np.float32)
    prob[20:34, 30:200] = 0.9
    cv2.fillPoly(prob, [np.array([[40, 80], [260, 70], [262, 88], [42, 98]], dtype=np.int32)], 0.8)
    prob[120:132, 40:120] = 0.35
    prob[140:142, 300:302] = 0.95
    return prob


def test_db_postprocess_equals_rapidocr() -> None:
    rapid = pytest.importorskip("rapidocr.ch_ppocr_det.utils")
    prob = probability_map()
    boxes, scores = DBPostProcess(PARAMS)(prob, 640, 330)
    reference = rapid.DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6, use_dilation=True, score_mode="fast")
    expected_boxes, expected_scores = reference(prob[None, None], (330, 640))
    assert len(boxes) == 2
    np.testing.assert_array_equal(boxes, np.asarray(expected_boxes, dtype=np.float32))
    assert scores == expected_scores


def test_no_text_gives_an_empty_box_array() -> None:
    boxes, scores = DBPostProcess(PARAMS)(np.zeros((64, 64), dtype=np.float32), 64, 64)
    assert boxes.shape == (0, 4, 2) and scores == []


def test_reading_order_follows_immich_including_equal_y_order() -> None:
    reference = pytest.importorskip("mt_photos_triton.reference.ocr")
    pytest.importorskip("rapidocr")
    rng = np.random.default_rng(3)
    for _ in range(50):
        tl = rng.integers(0, 400, size=(12, 2)).astype(np.float32)
        tl[rng.integers(0, 12, 4), 1] = tl[0, 1]  # several boxes on exactly the same y
        boxes = np.stack([tl, tl + [50, 0], tl + [50, 20], tl + [0, 20]], axis=1)
        ours = boxes[reading_order(boxes)]
        np.testing.assert_array_equal(ours, reference.ReferenceOcr._sorted_boxes(boxes))


def test_recognition_batches_follow_rapidocr() -> None:
    main = pytest.importorskip("rapidocr.ch_ppocr_rec.main")
    rng = np.random.default_rng(5)
    crops = [rng.integers(0, 255, size=(int(h), int(w), 3), dtype=np.uint8) for h, w in [(30, 200), (20, 500), (48, 48), (31, 90), (40, 400), (25, 80), (33, 1000)]]
    batches = recognition_batches(crops, PARAMS)
    assert [len(b.indices) for b in batches] == [6, 1]
    ratios = [c.shape[1] / c.shape[0] for c in crops]
    assert batches[0].indices == [int(i) for i in np.argsort(ratios)[:6]]
    assert batches[0].pixels.shape == (6, 3, 48, int(48 * max(ratios[i] for i in batches[0].indices)))
    recognizer = main.TextRecognizer.__new__(main.TextRecognizer)
    recognizer.rec_image_shape = (3, 48, 320)
    for batch in batches:
        max_ratio = max(320 / 48, *(ratios[i] for i in batch.indices))
        for row, index in enumerate(batch.indices):
            np.testing.assert_array_equal(batch.pixels[row], recognizer.resize_norm_img(crops[index], max_ratio))


def test_ctc_decoder_merges_repeats_drops_blanks_and_averages_kept_steps() -> None:
    decoder = CTCDecoder(["a", "b", "c"])  # classes: blank, a, b, c, space
    steps = [1, 1, 0, 1, 2, 4, 3]
    probs = np.full((1, len(steps), 5), 0.01, dtype=np.float32)
    for t, cls in enumerate(steps):
        probs[0, t, cls] = 0.9 - 0.1 * (t % 2)
    [(text, score)] = decoder.from_probabilities(probs)
    assert text == "aab c"
    # kept steps 0, 3, 4, 5, 6 (not the repeat at 1, nor the blank at 2): 0.9, 0.8, 0.9, 0.8, 0.9
    assert score == pytest.approx(0.86, abs=1e-5)
    assert decoder.from_probabilities(np.zeros((1, 3, 5), dtype=np.float32)) == [("", 0.0)]


def test_select_texts_keeps_scores_above_threshold_sorted_by_top_left_y() -> None:
    boxes = np.array([[[0, 50], [9, 50], [9, 60], [0, 60]], [[0, 10], [9, 10], [9, 20], [0, 20]], [[5, 10], [9, 10], [9, 20], [5, 20]]], np.float32)
    result = select_texts(boxes, [("late", 0.95), ("early", 0.99), ("cut", 0.9)], PARAMS)
    assert result.texts == ["early", "late"]
    assert result.boxes[0, 0].tolist() == [0, 10]


def test_pad_results_pads_to_the_largest_count() -> None:
    one = OcrResult(
        ["一"], np.array([0.97], np.float32), np.ones((1, 4, 2), np.float32), np.array([0.7], np.float32),
        np.zeros(1, np.int32), (40, 30),
    )
    out = pad_results([OcrResult.empty(), one])
    assert out["texts"].shape == (2, 1) and out["count"].ravel().tolist() == [0, 1]
    assert out["texts"][1, 0] == "一".encode()
    assert out["box_scores"].tolist() == [[0.0], [pytest.approx(0.7)]] and out["reading_order"].shape == (2, 1)
    assert out["image_size"].tolist() == [[0, 0], [40, 30]]
    assert pad_results([OcrResult.empty()])["boxes"].shape == (1, 0, 4, 2)


def test_decode_applies_exif_orientation() -> None:
    upright = Image.new("RGB", (120, 40), "white")
    upright.paste((255, 0, 0), (0, 0, 20, 40))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    stored = upright.rotate(90, expand=True)
    decoded = decode_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.size == (120, 40)
    assert decoded.getpixel((5, 20))[0] > 200 and decoded.getpixel((100, 20))[1] > 200


def test_decode_composites_transparency_on_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (10, 10, 20, 20))
    decoded = decode_image(encode(rgba, "PNG"))
    assert decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == (255, 255, 255) and decoded.getpixel((15, 15)) == (0, 0, 0)


def test_decode_converts_grayscale_to_rgb() -> None:
    decoded = decode_image(encode(Image.new("L", (40, 40), 77), "JPEG"))
    assert decoded.mode == "RGB" and decoded.getpixel((5, 5))[0] in range(75, 80)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", INVALID_IMAGE),
        (b"GIF89a" + bytes(64), INVALID_IMAGE),
        (encode(Image.new("P", (8, 8)), "GIF"), INVALID_IMAGE),
        (encode(Image.new("L", (10001, 5)), "PNG"), IMAGE_TOO_LARGE),
        (encode(Image.new("RGB", (300, 300)), "JPEG")[:200], INVALID_IMAGE),
    ],
    ids=["empty", "bad gif header", "gif", "too wide", "truncated jpeg"],
)
def test_decode_refuses_bad_uploads(data: bytes, code: str) -> None:
    with pytest.raises(PipelineError) as caught:
        decode_image(data)
    assert caught.value.code == code


def test_a_second_look_only_where_nothing_was_read_and_only_once() -> None:
    import dataclasses

    image = Image.new("RGB", (800, 566), "white")
    job = OcrJob(image, detection_input(image, PARAMS))
    assert job.retry_input(PARAMS) is None, "not before recognition"
    job.outcome = OcrResult(
        ["TEST"], np.ones(1, np.float32), np.zeros((1, 4, 2), np.float32), np.ones(1, np.float32), np.zeros(1, np.int32)
    )
    assert job.retry_input(PARAMS) is None, "text was read: the reference's answer stands"
    job.outcome = OcrResult.empty()
    retry = job.retry_input(PARAMS)
    assert retry is not None and retry.shape == (3, 288, 384)  # half of 800x566, sides rounded to 32
    assert job.retry_input(PARAMS) is None, "one second look at most"
    off = OcrJob(image, None, outcome=OcrResult.empty())
    assert off.retry_input(dataclasses.replace(PARAMS, retry_scale=0.0)) is None
    small = OcrJob(Image.new("RGB", (60, 40)), None, outcome=OcrResult.empty())
    assert small.retry_input(PARAMS) is None, "half of it would be under the minimum side"
