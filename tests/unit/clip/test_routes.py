"""`/clip/img` and `/clip/txt` against a fake backend: bodies, number format, header check, error mapping."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from adapter import Settings, create_app
from adapter.backend import BackendUnavailable, InferenceFailed, ModelUnavailable
from tests.unit.adapter.fakes import FakeBackend

KEY = {"api-key": "mt_photos_ai_extra"}
VECTOR = np.array([[1 / 3, -1.25e-5, 0.5, 2.5e-8]], dtype=np.float32)
STRINGS = ["0.3333333400000000", "-0.0000125000000000", "0.5000000000000000", "0.0000000250000000"]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` in a few dozen bytes (signature, IHDR, empty IEND)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(answers={"clip_image": {"embedding": VECTOR}, "clip_text": {"embedding": VECTOR}})


@pytest.fixture
def client(backend: FakeBackend):
    with TestClient(create_app(Settings(), backend_factory=lambda _: backend)) as test_client:
        yield test_client


def test_image_route_sends_the_bytes_and_formats_the_vector(client: TestClient, backend: FakeBackend) -> None:
    data = png(40, 30)
    response = client.post("/clip/img", files={"file": ("a.png", data, "image/png")}, headers=KEY)
    assert response.status_code == 200
    assert response.content == ('{"result":["' + '","'.join(STRINGS) + '"]}').encode()
    model, inputs = backend.calls[0]
    assert model == "clip_image"
    assert inputs["image_bytes"].shape == (1, 1) and inputs["image_bytes"][0, 0] == data


def test_text_route_sends_the_text(client: TestClient, backend: FakeBackend) -> None:
    response = client.post("/clip/txt", json={"text": "红色的花"}, headers=KEY)
    assert response.json() == {"result": STRINGS}
    model, inputs = backend.calls[0]
    assert model == "clip_text" and inputs["text"][0, 0].decode() == "红色的花"


def test_lone_surrogate_is_not_a_server_error(client: TestClient, backend: FakeBackend) -> None:
    response = client.post("/clip/txt", content=b'{"text":"red \\ud800"}', headers={**KEY, "content-type": "application/json"})
    assert response.status_code == 200 and response.json() == {"result": STRINGS}
    assert backend.calls[0][1]["text"][0, 0] == "red ?".encode()


def test_no_side_limit_on_clip_as_the_reference(client: TestClient, backend: FakeBackend) -> None:
    response = client.post("/clip/img", files={"file": ("w.png", png(10001, 3), "image/png")}, headers=KEY)
    assert response.json() == {"result": STRINGS}
    assert len(backend.calls) == 1


def test_a_decompression_bomb_is_refused_from_its_header(client: TestClient, backend: FakeBackend) -> None:
    bomb = png_header(60000, 60000)
    assert len(bomb) < 100
    response = client.post("/clip/img", files={"file": ("b.png", bomb, "image/png")}, headers=KEY)
    assert response.json() == {"result": [], "msg": "height or width out of range"}
    assert backend.calls == []


def test_the_pixel_budget_can_be_lowered(backend: FakeBackend) -> None:
    settings = Settings.from_env({"MAX_IMAGE_PIXELS": "1000"})
    with TestClient(create_app(settings, backend_factory=lambda _: backend)) as client:
        small = client.post("/clip/img", files={"file": ("s.png", png(40, 25), "image/png")}, headers=KEY)
        large = client.post("/clip/img", files={"file": ("l.png", png(40, 26), "image/png")}, headers=KEY)
    assert small.json() == {"result": STRINGS}
    assert large.json() == {"result": [], "msg": "height or width out of range"}


@pytest.mark.parametrize("data", [b"", b"not an image", png(20, 20)[:10]], ids=["empty", "garbage", "truncated-header"])
def test_invalid_images(client: TestClient, backend: FakeBackend, data: bytes) -> None:
    response = client.post("/clip/img", files={"file": ("x.png", data, "image/png")}, headers=KEY)
    assert response.json() == {"result": [], "msg": "Invalid image format"}


def test_missing_file_part_is_the_framework_422(client: TestClient) -> None:
    response = client.post("/clip/img", data={"other": "1"}, headers=KEY)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{}', {"type": "missing", "loc": ["body", "text"], "msg": "Field required", "input": {}}),
        (b'{"query":"x"}', {"type": "missing", "loc": ["body", "text"], "msg": "Field required", "input": {"query": "x"}}),
        (b'{"text":12}', {"type": "string_type", "loc": ["body", "text"], "msg": "Input should be a valid string", "input": 12}),
        (b'{"text":null}', {"type": "string_type", "loc": ["body", "text"], "msg": "Input should be a valid string", "input": None}),
        (b'', {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}),
        (b'  ', {"type": "json_invalid", "loc": ["body", 2], "msg": "JSON decode error", "input": {},
                 "ctx": {"error": "Expecting value"}}),
        (b'null', {"type": "model_attributes_type", "loc": ["body"],
                   "msg": "Input should be a valid dictionary or object to extract fields from", "input": None}),
        (b'["x"]', {"type": "model_attributes_type", "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from", "input": ["x"]}),
        (b'{"text":', {"type": "json_invalid", "loc": ["body", 8], "msg": "JSON decode error", "input": {},
                       "ctx": {"error": "Expecting value"}}),
    ],
    ids=["empty-object", "other-field", "number", "null", "no-body", "blank", "null-body", "list", "invalid-json"],
)
def test_text_body_errors_are_the_framework_422(client: TestClient, backend: FakeBackend, body: bytes, detail: dict) -> None:
    response = client.post("/clip/txt", content=body, headers={**KEY, "content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"detail": [detail]}
    assert backend.calls == []


JSON_NOT_DECLARED = {
    "type": "model_attributes_type", "loc": ["body"],
    "msg": "Input should be a valid dictionary or object to extract fields from", "input": '{"text":"x"}',
}


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
                     "application/json-patch", "multipart/form-data"],
)
def test_a_json_body_not_declared_as_json_is_the_framework_422(
    client: TestClient, backend: FakeBackend, content_type: str | None
) -> None:
    # FastAPI (the reference) reads the body as JSON only when its Content-Type says so; otherwise pydantic
    # validates the raw text against the model
    headers = {**KEY, **({"content-type": content_type} if content_type else {})}
    response = client.post("/clip/txt", content=b'{"text":"x"}', headers=headers)
    if content_type is None:
        assert "content-type" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 422
    assert response.json() == {"detail": [JSON_NOT_DECLARED]}
    assert backend.calls == []


@pytest.mark.parametrize("content_type", ["application/json", "APPLICATION/JSON; charset=utf-8",
                                          "application/vnd.api+json"])
def test_json_content_types_are_read(client: TestClient, content_type: str) -> None:
    response = client.post("/clip/txt", content=b'{"text":"x"}', headers={**KEY, "content-type": content_type})
    assert response.json() == {"result": STRINGS}


def test_undecodable_text_body_is_a_422_not_a_500(client: TestClient) -> None:
    response = client.post("/clip/txt", content=b"\xff\xfe{", headers={**KEY, "content-type": "text/plain"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "model_attributes_type"


@pytest.mark.parametrize(
    ("failure", "msg"),
    [
        (ModelUnavailable("clip_image"), "model 'clip_image' is not available: run `mt-photos-triton export clip`"),
        (BackendUnavailable("127.0.0.1:8000"), "inference server unavailable"),
        (InferenceFailed("clip_image", "invalid_image", "clip_image_preprocess: invalid_image: undecodable"),
         "Invalid image format"),
        (InferenceFailed("clip_image", None, "something odd /secret/path"), "internal error"),
    ],
)
def test_backend_failures_are_short_msg_bodies(backend: FakeBackend, client: TestClient, failure, msg: str) -> None:
    backend.failure = failure
    response = client.post("/clip/img", files={"file": ("a.png", png(8, 8), "image/png")}, headers=KEY)
    assert response.status_code == 200
    assert response.json() == {"result": [], "msg": msg}


def test_routes_need_the_key(client: TestClient) -> None:
    assert client.post("/clip/txt", json={"text": "x"}).status_code == 401
    assert client.post("/clip/img", files={"file": ("a.png", png(8, 8), "image/png")}).status_code == 401
