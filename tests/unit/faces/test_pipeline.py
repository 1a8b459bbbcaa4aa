"""Pure faces maths on small synthetic arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from adapter.wire import embedding_numbers
from mt_photos_triton.errors import IMAGE_TOO_LARGE, INVALID_IMAGE, PipelineError
from mt_photos_triton.pipelines import faces as pipeline

CONTRACT = pipeline.DetectorContract(input_size=64, mean=127.5, std=128.0, strides=(8, 16, 32), anchors=2, nms_iou=0.4)


def png(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_letterbox_keeps_the_aspect_at_the_top_left() -> None:
    tall = np.full((200, 100, 3), 255, np.uint8)
    canvas, scale = pipeline.letterbox(tall, 64)
    assert scale == 64 / 200
    assert canvas[:, :32].min() == 255 and canvas[:, 32:].max() == 0  # int(64 / 2) columns of image
    wide = np.full((100, 300, 3), 255, np.uint8)
    canvas, scale = pipeline.letterbox(wide, 64)
    assert scale == 21 / 100  # new height int(64 * 100/300) = 21
    assert canvas[:21].min() == 255 and canvas[21:].max() == 0


def test_normalisation_is_rgb_nchw() -> None:
    bgr = np.zeros((1, 2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    blob = pipeline.to_nchw_rgb(bgr, 127.5, 127.5)
    assert blob.shape == (1, 3, 2, 2) and blob.dtype == np.float32
    assert np.allclose(blob[0, 2], 1.0) and np.allclose(blob[0, 0], -1.0)


def test_anchor_centres_repeat_per_anchor() -> None:
    centres = pipeline.anchor_centres(32, 16, 2)
    assert centres.tolist() == [[0, 0], [0, 0], [16, 0], [16, 0], [0, 16], [0, 16], [16, 16], [16, 16]]


def test_nms_drops_overlaps_and_keeps_best_first() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.7, 0.9, 0.8, 0.6], np.float32)
    assert pipeline.nms(boxes, scores, 0.4) == [1, 2]


def test_decoder_places_a_face_from_its_anchor_and_rescales() -> None:
    rows = {s: (64 // s) ** 2 * 2 for s in CONTRACT.strides}
    maps = {}
    for s, n in rows.items():
        maps[f"score_{s}"] = np.zeros((n, 1), np.float32)
        maps[f"bbox_{s}"] = np.ones((n, 4), np.float32)
        maps[f"kps_{s}"] = np.zeros((n, 10), np.float32)
    # stride 16, cell (x=1, y=2), second anchor: row (2 * 4 + 1) * 2 + 1
    maps["score_16"][19] = 0.9
    maps["kps_16"][19] = np.arange(10) / 16
    faces = pipeline.ScrfdDecoder(CONTRACT)(maps, scale=0.5, min_score=0.5)
    assert len(faces) == 1
    assert faces.boxes.tolist() == [[(16 - 16) / 0.5, (32 - 16) / 0.5, (16 + 16) / 0.5, (32 + 16) / 0.5]]
    assert faces.scores.tolist() == [pytest.approx(0.9)]
    assert faces.landmarks[0, 1].tolist() == [(16 + 2) / 0.5, (32 + 3) / 0.5]
    empty = pipeline.ScrfdDecoder(CONTRACT)(maps, scale=0.5, min_score=0.95)
    assert empty.boxes.shape == (0, 4) and empty.landmarks.shape == (0, 5, 2)


def test_alignment_maps_the_template_onto_itself() -> None:
    matrix = pipeline.similarity_transform(pipeline.ARCFACE_TEMPLATE * 2 + 10, pipeline.ARCFACE_TEMPLATE)
    assert np.allclose(matrix, [[0.5, 0, -5], [0, 0.5, -5]], atol=1e-5)
    image = np.zeros((300, 300, 3), np.uint8)
    image[100:200, 100:200] = 200
    crop = pipeline.align_face(image, (pipeline.ARCFACE_TEMPLATE + 100).astype(np.float32))
    assert crop.shape == (112, 112, 3)
    assert crop[50, 50].tolist() == [200, 200, 200] and crop[:, :, 0].mean() < 200


def test_facial_area_rounds_half_to_even_and_is_not_clipped() -> None:
    box = np.array([-2.5, 3.5, 10.5, 20.4], np.float32)
    assert pipeline.facial_area(box) == {"x": -2, "y": 4, "w": 12, "h": 16}


def test_embedding_numbers_are_shortest_float32_decimals() -> None:
    values = np.array([1 / 3, 12.0, -1.25e-05], np.float32)
    assert embedding_numbers(values) == [0.33333334, 12.0, -1.25e-05]


def test_decode_applies_exif_orientation() -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = pipeline.decode_image(png(stored, "JPEG", exif=exif))
    assert image.shape == (40, 20, 3)


def test_decode_reads_grey_rgba_and_the_first_gif_frame() -> None:
    assert pipeline.decode_image(png(Image.new("L", (8, 6), 90))).shape == (6, 8, 3)
    assert pipeline.decode_image(png(Image.new("RGBA", (8, 6), (0, 0, 255, 0)))).tolist()[0][0] == [255, 0, 0]
    frames = [Image.new("RGB", (8, 6), (0, 255, 0)), Image.new("RGB", (8, 6), (255, 0, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert pipeline.decode_image(gif.getvalue())[0, 0].tolist() == [0, 255, 0]  # BGR green


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", INVALID_IMAGE),
        (b"garbage", INVALID_IMAGE),
        (png(Image.new("L", (10001, 4))), IMAGE_TOO_LARGE),
        (png(Image.new("RGB", (64, 64)))[:60] + b"\0" * 100, INVALID_IMAGE),
        (png(Image.new("RGB", (64, 64), (9, 9, 9)), "GIF")[:40], INVALID_IMAGE),
    ],
)
def test_decode_refuses_bad_bytes(data: bytes, code: str) -> None:
    with pytest.raises(PipelineError) as caught:
        pipeline.decode_image(data)
    assert caught.value.code == code


def test_contracts_come_from_parameters_only() -> None:
    parameters = {
        "detector_input_size": "640",
        "detector_mean": "127.5",
        "detector_std": "128.0",
        "detector_strides": "8,16,32",
        "detector_anchors_per_position": "2",
        "detector_nms_iou_threshold": "0.4",
        "recognizer_mean": "0.0",
        "recognizer_std": "1.0",
        "recognizer_embedding_size": "512",
    }
    detector, recognizer = pipeline.contracts_from_parameters(parameters)
    assert detector.strides == (8, 16, 32) and recognizer.mean == 0.0
    del parameters["detector_mean"]
    with pytest.raises(ValueError, match="detector_mean"):
        pipeline.contracts_from_parameters(parameters)


@pytest.mark.parametrize(("mean", "std"), [(127.5, 128.0), (127.5, 127.5), (0.0, 1.0)])
def test_normalisation_is_numpy_float32_arithmetic_exactly(mean: float, std: float) -> None:
    bgr = np.random.default_rng(7).integers(0, 256, (3, 40, 24, 3), dtype=np.uint8)
    expected = (bgr[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) - np.float32(mean)) * np.float32(1.0 / std)
    assert np.array_equal(pipeline.to_nchw_rgb(bgr, mean, std), expected)
