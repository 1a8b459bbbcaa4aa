"""POST /ocr with a readable fake backend: exact JSON bytes, number formats, error mapping."""

from __future__ import annotations

import io

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from adapter import Settings, create_app
from adapter.backend import BackendUnavailable, InferenceFailed, ModelUnavailable
from adapter.wire import ocr_coordinate as format_coordinate, ocr_score as format_score
from tests.unit.adapter.fakes import FakeBackend

KEY = {"api-key": "mt_photos_ai_extra"}


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="JPEG")
    return buffer.getvalue()


def ocr_outputs(texts: list[str], scores: list[float], boxes: list[list[list[float]]]) -> dict[str, np.ndarray]:
    n = len(texts)
    return {
        "texts": np.array([[t.encode() for t in texts]], dtype=np.object_).reshape(1, n),
        "scores": np.array([scores], dtype=np.float32).reshape(1, n),
        "boxes": np.array([boxes], dtype=np.float32).reshape(1, n, 4, 2),
        "count": np.array([[n]], dtype=np.int32),
    }


def post(backend: FakeBackend, data: bytes) -> bytes:
    app = create_app(Settings(), backend_factory=lambda settings: backend)
    with TestClient(app) as client:
        response = client.post("/ocr", files={"file": ("a.jpg", data)}, headers=KEY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.content


def test_body_is_the_reference_json_exactly() -> None:
    backend = FakeBackend(
        answers={
            "ocr": ocr_outputs(
                ["正品促销", "5.8"],
                [0.99545, 0.995],
                [[[7, 1], [320, 1], [320, 107], [7, 107]], [[122, 282], [216, 282], [216, 346], [122, 346]]],
            )
        }
    )
    body = post(backend, jpeg())
    assert body == (
        '{"result":{"texts":["正品促销","5.8"],"scores":["1.00","0.99"],"boxes":['
        '{"x":"7.0","y":"1.0","width":"313.0","height":"106.0"},'
        '{"x":"122.0","y":"282.0","width":"94.0","height":"64.0"}]}}'
    ).encode()
    [(model, inputs)] = backend.calls
    assert model == "ocr" and inputs["image_bytes"].shape == (1, 1)


def test_no_text_gives_empty_lists() -> None:
    assert post(FakeBackend(answers={"ocr": ocr_outputs([], [], [])}), jpeg()) == b'{"result":{"texts":[],"scores":[],"boxes":[]}}'


def test_score_and_coordinate_formats() -> None:
    # the reference formats RapidOCR's float64 5-decimal score; its float32 copy must round the same way
    assert format_score(np.float32(0.995)) == f"{0.995:.2f}" == "0.99"
    assert format_score(np.float32(0.99545)) == "1.00"
    assert format_score(np.float32(0.90001)) == "0.90"
    assert format_coordinate(np.float32(123.0)) == "123.0"
    assert format_coordinate(12.345678) == "12.35"


@pytest.mark.parametrize(
    ("data", "msg"),
    [(b"", "Invalid image format"), (b"%PDF-1.4 not an image", "Invalid image format")],
)
def test_header_errors_never_reach_the_backend(data: bytes, msg: str) -> None:
    backend = FakeBackend(answers={"ocr": ocr_outputs([], [], [])})
    assert post(backend, data) == f'{{"result":[],"msg":"{msg}"}}'.encode()
    assert backend.calls == []


def test_too_large_is_refused_from_the_header() -> None:
    # the reference's 10000 px side limit holds on /ocr (not on /clip/img)
    buffer = io.BytesIO()
    Image.new("1", (10001, 8)).save(buffer, format="PNG")
    backend = FakeBackend(answers={"ocr": ocr_outputs([], [], [])})
    assert post(backend, buffer.getvalue()) == b'{"result":[],"msg":"height or width out of range"}'
    assert backend.calls == []


def test_gif_is_refused_as_the_reference_does() -> None:
    buffer = io.BytesIO()
    Image.new("P", (40, 30)).save(buffer, format="GIF")
    backend = FakeBackend(answers={"ocr": ocr_outputs([], [], [])})
    assert post(backend, buffer.getvalue()) == b'{"result":[],"msg":"Invalid image format"}'
    assert backend.calls == []


@pytest.mark.parametrize(
    ("error", "msg"),
    [
        (InferenceFailed("ocr", "invalid_image", "ocr: invalid_image: undecodable"), "Invalid image format"),
        (ModelUnavailable("ocr"), "model 'ocr' is not available: run `mt-photos-triton export ocr`"),
        (BackendUnavailable("127.0.0.1:8000: ConnectionRefusedError"), "inference server unavailable"),
        (InferenceFailed("ocr", None, "ocr: internal error (ValueError)"), "internal error"),
    ],
)
def test_backend_errors_become_short_messages(error: Exception, msg: str) -> None:
    assert post(FakeBackend(failure=error), jpeg()) == ('{"result":[],"msg":"' + msg + '"}').encode()
