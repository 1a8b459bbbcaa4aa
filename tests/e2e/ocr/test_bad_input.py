"""Bad uploads to POST /ocr get the spec's HTTP 200 `msg` bodies, and the service keeps answering."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.harness import TritonHarness
from tests.ocr_support import SOURCES, samples

pytestmark = pytest.mark.e2e

API_KEY = {"api-key": "mt_photos_ai_extra"}
INVALID = {"result": [], "msg": "Invalid image format"}
TOO_LARGE = {"result": [], "msg": "height or width out of range"}
EMPTY_RESULT = {"result": {"texts": [], "scores": [], "boxes": []}}


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = encoded(Image.effect_noise((640, 480), 64).convert("RGB"), "JPEG")
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "empty file": (b"", INVALID),
    "random bytes": (bytes(range(256)) * 64, INVALID),
    "truncated JPEG": (truncated_jpeg(), INVALID),
    "20000x10 PNG": (encoded(Image.new("L", (20000, 10), 255), "PNG"), TOO_LARGE),
    "GIF": (encoded(Image.new("P", (64, 64), 1), "GIF"), INVALID),
    "text file renamed .jpg": ("这不是图片 / not an image\n".encode() * 20, INVALID),
}


@pytest.fixture(scope="module")
def ocr_url(ocr_triton: TritonHarness, adapter_factory: Callable[..., AbstractContextManager[str]]):
    with adapter_factory() as url:
        yield url


def post(url: str, data: bytes, filename: str = "upload.jpg") -> httpx.Response:
    return httpx.post(f"{url}/ocr", files={"file": (filename, data)}, headers=API_KEY, timeout=120)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_gets_msg_body_and_service_keeps_answering(ocr_url: str, fixtures: Path, case: str, source: str) -> None:
    line = samples(source, fixtures)["line"]
    data, body = BAD_UPLOADS[case]
    response = post(ocr_url, data)
    assert response.status_code == 200
    assert json.loads(response.content) == body
    good = post(ocr_url, line.data)
    assert json.loads(good.content)["result"]["texts"] == list(line.lines)


def test_images_under_32_px_give_an_empty_result(ocr_url: str) -> None:
    response = post(ocr_url, encoded(Image.new("RGB", (31, 400), "white"), "PNG"), "thin.png")
    assert json.loads(response.content) == EMPTY_RESULT


def test_missing_part_and_wrong_key_keep_the_framework_answers(ocr_url: str) -> None:
    missing = httpx.post(f"{ocr_url}/ocr", files={"other": ("a.jpg", b"x")}, headers=API_KEY, timeout=30)
    assert missing.status_code == 422
    wrong_key = httpx.post(f"{ocr_url}/ocr", files={"file": ("a.jpg", b"x")}, headers={"api-key": "nope"}, timeout=30)
    assert wrong_key.status_code == 401
    assert json.loads(wrong_key.content) == {"detail": "Invalid API key"}
