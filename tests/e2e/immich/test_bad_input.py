"""Bad `/predict` requests over HTTP on the real service: immich's statuses and `{"detail": ...}` bodies (on
generated images: all run from a plain clone)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.immich.conftest import CLIP_MODEL
from tests.e2e.immich.test_predict import CLIP_TEXTUAL, CLIP_VISUAL, FACES, answer, ocr_entries, one_face, predict
from tests.e2e.service.support import Service

pytestmark = pytest.mark.e2e


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb's shape), with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "gray").save(buffer, format="JPEG")
    return buffer.getvalue()


def detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    return body["detail"]


def test_neither_image_nor_text(immich_service: Service) -> None:
    assert detail(predict(immich_service, CLIP_TEXTUAL), 400) == "Either image or text must be provided"


def test_both_image_and_text_read_the_image_as_immich(immich_service: Service) -> None:
    both = answer(predict(immich_service, CLIP_VISUAL, image=jpeg(), text="ignored"))
    assert both == answer(predict(immich_service, CLIP_VISUAL, image=jpeg()))
    assert "needs text" in detail(predict(immich_service, CLIP_TEXTUAL, image=jpeg(), text="a dog"), 400)


@pytest.mark.parametrize(
    "entries",
    ["not json", "[1, 2]", json.dumps({"clip": {"visual": {}}}), json.dumps({"clip": {"visual": {"modelName": 3}}}),
     json.dumps({"clip": "visual"}), json.dumps({}), json.dumps({"unknown-task": {"visual": {"modelName": "x"}}}),
     json.dumps({"clip": {"sideways": {"modelName": CLIP_MODEL}}}),
     json.dumps(ocr_entries(max_resolution=2.5)), json.dumps({"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"}}})],
    ids=["not-json", "array", "no-model", "model-not-string", "type-not-object", "no-task", "unknown-task",
         "unknown-type", "fractional-resolution", "detection-alone"],
)
def test_invalid_entries(immich_service: Service, entries: str) -> None:
    assert detail(predict(immich_service, entries, image=jpeg(), text="a dog"), 422) == "Invalid request format."


def test_recognition_without_detection(immich_service: Service) -> None:
    entries = {"facial-recognition": {"recognition": {"modelName": "buffalo_l"}}}
    assert "depends on output of detection" in detail(predict(immich_service, entries, image=jpeg()), 400)


def test_out_of_range_option_is_refused_by_the_model(immich_service: Service) -> None:
    assert detail(predict(immich_service, ocr_entries(rec_min_score=3.0), image=jpeg()), 422) == "Invalid request format."


@pytest.mark.parametrize(
    ("entries", "asked", "served", "family"),
    [({"clip": {"visual": {"modelName": "ViT-B-16__openai"}}}, "ViT-B-16__openai", CLIP_MODEL, "clip"),
     ({"facial-recognition": {"detection": {"modelName": "antelopev2", "options": {"minScore": 0.7}},
                              "recognition": {"modelName": "antelopev2"}}}, "antelopev2", "buffalo_l", "faces"),
     ({"ocr": {"detection": {"modelName": "PP-OCRv5_server"}, "recognition": {"modelName": "PP-OCRv5_server"}}},
      "PP-OCRv5_server", "PP-OCRv5_mobile", "ocr")],
)
def test_another_model_is_refused_naming_the_served_one(
    immich_service: Service, entries: dict, asked: str, served: str, family: str
) -> None:
    text = detail(predict(immich_service, entries, image=jpeg()), 400)
    assert asked in text and served in text and f"mt-photos-triton export {family} --model {asked}" in text


def test_served_names_as_immich_spells_them(immich_service: Service) -> None:
    entries = {"clip": {"visual": {"modelName": f"immich-app/{CLIP_MODEL}"}}}
    answer(predict(immich_service, entries, image=jpeg()))
    ocr = {"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"}, "recognition": {"modelName": "CH__PP-OCRv5_mobile"}}}
    answer(predict(immich_service, ocr, image=jpeg()))


@pytest.mark.parametrize("entries", [CLIP_VISUAL, FACES, ocr_entries()], ids=["clip", "faces", "ocr"])
def test_corrupt_image(immich_service: Service, entries: dict) -> None:
    assert detail(predict(immich_service, entries, image=b"\xff\xd8\xff not really a jpeg"), 422) == "Invalid image."
    assert detail(predict(immich_service, entries, image=jpeg()[:200]), 422) == "Invalid image."


@pytest.mark.parametrize("entries", [CLIP_VISUAL, FACES, ocr_entries()], ids=["clip", "faces", "ocr"])
def test_oversized_image_is_refused_from_its_header(immich_service: Service, entries: dict) -> None:
    assert detail(predict(immich_service, entries, image=png_header(30000, 30000)), 413) == "Image too large."


def test_the_service_still_answers_after_bad_requests(immich_service: Service, fixtures: Path) -> None:
    data = one_face(fixtures)
    assert answer(predict(immich_service, FACES, image=data))["facial-recognition"]
