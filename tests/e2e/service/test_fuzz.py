"""Bad input: thousands of generated bad requests across every route, against the real adapter + Triton.

Every answer must be in the spec's shapes with the right status and never a 5xx, the service must keep
answering, and the adapter's memory must come back to within 20% of its baseline.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections import Counter
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from adapter import Settings
from tests.e2e.service.support import HEADERS, KEY, Call, Service, text_photo

pytestmark = pytest.mark.e2e

REQUESTS = 2000
MEMORY_SLACK = 1.20
INFERENCE_ROUTES = ["/clip/img", "/clip/txt", "/ocr", "/represent"]
# the inference routes get most of the traffic: they are where bad bytes reach decoders and Triton
ROUTES = INFERENCE_ROUTES * 4 + ["/check", "/restart", "/restart_v2", "/", "/health/ready", "/health/live",
                                 "/no/such/route", "/ocr/"]
ALLOWED_STATUS = {200, 401, 404, 405, 413, 422}


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (its data is a few bytes: refused before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _encoded(fmt: str, size: tuple[int, int] = (48, 32), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, fmt)
    return out.getvalue()


JPEG = text_photo()
PNG = _encoded("PNG")
SAMPLES = [JPEG, PNG, _encoded("GIF", mode="P"), _encoded("BMP"), _encoded("WEBP")]

bad_images = st.one_of(
    st.binary(max_size=2048),                                                   # random bytes
    st.sampled_from(SAMPLES).flatmap(lambda b: st.integers(0, len(b) - 1).map(lambda n: b[:n])),  # truncated
    st.sampled_from(SAMPLES).flatmap(                                           # corrupted body, valid header
        lambda b: st.integers(64, len(b) - 1).map(lambda n: b[:n] + b"\xff" * 32 + b[n + 32:])),
    st.tuples(st.integers(10001, 60000), st.integers(1, 60000)).map(lambda wh: _png_header(*wh)),  # huge header
    st.tuples(st.integers(7100, 10000), st.integers(7100, 10000)).map(lambda wh: _png_header(*wh)),  # large, no data
    st.tuples(st.integers(16000, 60000), st.integers(16000, 60000)).map(lambda wh: _png_header(*wh)),  # bomb
    st.just(b""),
    st.text(max_size=200).map(str.encode),                                      # a text file named .jpg
    st.sampled_from(SAMPLES),                                                   # valid images are fine too
)
json_bodies = st.one_of(
    st.fixed_dictionaries({"text": st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=5)),
                                             st.floats(allow_nan=False), st.booleans(), st.dictionaries(st.text(), st.text()))}),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    st.fixed_dictionaries({"text": st.text(max_size=300)}),
    st.integers(10_000, 400_000).map(lambda n: {"text": "很长的文字 long text " * (n // 16)}),  # enormous text
).map(lambda body: json.dumps(body, ensure_ascii=False).encode())
raw_bodies = st.one_of(st.binary(max_size=512), st.just(b"\xff\xfe\xfa not utf-8 {"), st.just(b'{"text": "\xc3\x28"}'))


@st.composite
def bad_requests(draw: Any) -> dict[str, Any]:
    route = draw(st.sampled_from(ROUTES))
    method = draw(st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH"]))
    key = draw(st.sampled_from([KEY] * 8 + ["", "wrong", KEY.upper()]))
    headers = {"api-key": key} if key else {}
    kind = draw(st.sampled_from(["multipart"] * 4 + ["json", "raw", "none"]))
    request: dict[str, Any] = {"method": method, "url": route, "headers": headers}
    if kind == "multipart":
        part = draw(st.sampled_from(["file"] * 4 + ["image", "files", ""]))
        request["files"] = {part or "x": ("image.jpg", draw(bad_images), "image/jpeg")}
        if draw(st.booleans()):
            request["data"] = {"extra": "field"}
    elif kind == "json":
        request["content"] = draw(json_bodies)
        headers["content-type"] = "application/json"
    elif kind == "raw":
        request["content"] = draw(raw_bodies)
        headers["content-type"] = draw(st.sampled_from(["application/json", "multipart/form-data",
                                                        "multipart/form-data; boundary=zz", "text/plain"]))
    return request


def check_shape(request: dict[str, Any], response: httpx.Response) -> None:
    route, status = request["url"], response.status_code
    where = f"{request['method']} {route} -> {status} {response.content[:200]!r}"
    assert status in ALLOWED_STATUS, where
    if route == "/" and status == 200:
        assert response.headers["content-type"].startswith("text/html"), where
        return
    body = json.loads(response.content)
    if status == 401:
        assert body == {"detail": "Invalid API key"}, where
    elif status in (404, 405, 413):
        assert set(body) == {"detail"} and isinstance(body["detail"], str), where
    elif status == 422:
        assert isinstance(body["detail"], list) and body["detail"], where
    elif route in INFERENCE_ROUTES:
        assert isinstance(body, dict) and "result" in body, where
        if "msg" in body:
            assert body["result"] == [] and isinstance(body["msg"], str) and body["msg"], where
            assert "Traceback" not in body["msg"] and "/" not in body["msg"].replace("`", ""), where


def test_generated_bad_requests(service: Service, mix: list[Call]) -> None:
    client = httpx.Client(base_url=service.url, timeout=60)
    # baseline after a warm-up, so that first-use allocations are not counted as growth
    for _ in range(20):
        for call in mix:
            client.post(call.route, headers=HEADERS, files=call.files, json=call.json_body)
    baseline = service.adapter_rss()
    statuses: Counter[int] = Counter()

    @settings(max_examples=REQUESTS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(bad_requests())
    def send(request: dict[str, Any]) -> None:
        response = client.request(**request)
        statuses[response.status_code] += 1
        check_shape(request, response)

    send()
    # over the body limit (MAX_BODY_MB): refused before it is read
    over = int(Settings().max_body_mb + 1) * 2**20
    huge = client.post("/ocr", headers=HEADERS, files={"file": ("big.jpg", b"\0" * over, "image/jpeg")})
    assert huge.status_code == 413 and set(huge.json()) == {"detail"}
    statuses[huge.status_code] += 1
    after = service.adapter_rss()
    still_answers = client.post("/ocr", headers=HEADERS, files={"file": ("t.jpg", JPEG, "image/jpeg")})
    client.close()
    sent = sum(statuses.values())
    print(f"\nfuzz: {sent} generated bad requests, statuses {dict(sorted(statuses.items()))}, no 5xx; adapter "
          f"memory {baseline / 2**20:.0f} MiB before, {after / 2**20:.0f} MiB after ({after / baseline:.2f}x)")
    assert sent >= REQUESTS
    assert still_answers.status_code == 200 and "texts" in still_answers.json()["result"]
    assert after <= baseline * MEMORY_SLACK
