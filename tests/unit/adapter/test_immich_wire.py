"""immich's wire formats (adapter/wire.py): orjson's numbers without orjson, and the three task answers."""

from __future__ import annotations

import numpy as np
import pytest

from adapter.wire import immich_clip, immich_embedding, immich_faces, immich_ocr, orjson_bytes, orjson_number


def test_numbers_as_orjson_writes_them() -> None:
    orjson = pytest.importorskip("orjson")
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.standard_normal(3000) * 10.0 ** rng.integers(-12, 22, 3000),
                             [0.0, -0.0, 1.0, 123.0, 16777216.0, 1e-7, 1e-6, 1e13, 1e12, 1e16, 1e15]])
    for value in values:
        assert orjson_number(np.float32(value)) == orjson.dumps(np.float32(value), option=orjson.OPT_SERIALIZE_NUMPY).decode()
        assert orjson_number(float(value)) == orjson.dumps(float(value)).decode()
    assert orjson_number(float("nan")) == "null"


def test_bodies_as_orjson_writes_them() -> None:
    orjson = pytest.importorskip("orjson")
    embedding = (np.random.default_rng(1).standard_normal(512) * 0.05).astype(np.float32)
    assert immich_embedding(embedding) == orjson.dumps(embedding, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    body = {"ocr": {"text": ["正品促销", 'a"b\n\u0001'], "box": np.array([0.1, 0.25], np.float32),
                    "boxScore": np.array([0.7], np.float32), "textScore": [0.99123, 1.0]},
            "imageHeight": 10, "imageWidth": np.int32(20), "detail": None, "flag": True}
    assert orjson_bytes(body) == orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def test_faces_answer() -> None:
    outputs = {
        "count": np.array([[2]], np.int32),
        "boxes": np.array([[[10.5, 20.4, 99.6, 120.5], [-3.2, 0.5, 40.0, 41.5], [0, 0, 0, 0]]], np.float32),
        "scores": np.array([[0.91, 0.8, 0.0]], np.float32),
        "embeddings": np.arange(3 * 4, dtype=np.float32).reshape(1, 3, 4) / 10,
    }
    faces = immich_faces(outputs)
    assert len(faces) == 2
    assert orjson_bytes(faces[0]["boundingBox"]) == b'{"x1":10.0,"y1":20.0,"x2":100.0,"y2":120.0}'  # half to even
    assert orjson_bytes(faces[1]["boundingBox"]) == b'{"x1":-3.0,"y1":0.0,"x2":40.0,"y2":42.0}'
    assert faces[1]["embedding"] == "[0.4,0.5,0.6,0.7]" and orjson_bytes(faces[0]["score"]) == b"0.91"


def test_ocr_answer_in_reading_order_normalised_by_the_image_read() -> None:
    boxes = np.array([[[[50, 10], [90, 10], [90, 30], [50, 30]], [[0, 14], [40, 14], [40, 30], [0, 30]]]], np.float32)
    outputs = {
        "count": np.array([[2]], np.int32), "texts": np.array([[b"right", b"left"]], dtype=np.object_),
        "scores": np.array([[0.99123, 0.95]], np.float32), "boxes": boxes,
        "box_scores": np.array([[0.8, 0.7]], np.float32), "reading_order": np.array([[1, 0]], np.int32),
        "image_size": np.array([[100, 40]], np.int32),
    }
    ocr = immich_ocr(outputs)
    assert ocr["text"] == ["left", "right"]
    assert ocr["box"].tolist() == pytest.approx([0, 0.35, 0.4, 0.35, 0.4, 0.75, 0, 0.75, 0.5, 0.25, 0.9, 0.25, 0.9, 0.75, 0.5, 0.75])
    assert ocr["box"].dtype == np.float32 and ocr["boxScore"].tolist() == pytest.approx([0.7, 0.8])
    assert ocr["textScore"] == [0.95, 0.99123], "RapidOCR's 5 decimals, as float64"
    empty = {**outputs, "count": np.array([[0]], np.int32)}
    assert orjson_bytes(immich_ocr(empty)) == b'{"text":[],"box":[],"boxScore":[],"textScore":[]}'
    assert immich_clip({"embedding": np.array([[0.5, -0.25]], np.float32)}) == "[0.5,-0.25]"
