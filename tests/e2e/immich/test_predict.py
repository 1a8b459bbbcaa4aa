"""immich's `/predict` over HTTP on the real service: the entries immich's server sends by default get answers in
immich-ml's exact shapes, read by a client written from immich's server, and equal to the MT Photos routes'
answers on the same models at the same thresholds.

A plain clone runs every test here: CLIP on a generated photo, faces on images the stand-in detector sees faces
in, OCR on rendered pages; the cases on the fixtures' photos and OCR images are skipped, naming the file, where
the checkout lacks them (a face photo also needs the licensed det_2.5g, its answers being about real faces)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.immich import client
from mt_photos_triton.reference.ocr_images import ENGLISH_LINES, bench_photo, photo_background
from mt_photos_triton.reference.ocr_images import encode as encode_image
from tests.e2e.immich.conftest import CLIP_MODEL, FACES_DETECTOR, FACES_MODEL, OCR_MODEL
from tests.e2e.service.support import HEADERS, Service
from tests.faces_support import detector_path, real_detector_present, standin_face_image, standin_spots_image, t1_bytes
from tests.ocr_support import samples

pytestmark = pytest.mark.e2e

CLIP_VISUAL = {"clip": {"visual": {"modelName": CLIP_MODEL}}}
CLIP_TEXTUAL = {"clip": {"textual": {"modelName": CLIP_MODEL, "options": {}}}}  # JSON.stringify drops no language
FACES = {"facial-recognition": {"detection": {"modelName": FACES_MODEL, "options": {"minScore": 0.7}},
                                "recognition": {"modelName": FACES_MODEL}}}


def ocr_entries(det_min_score: float = 0.5, max_resolution: int = 736, rec_min_score: float = 0.8) -> dict[str, Any]:
    return {"ocr": {"detection": {"modelName": OCR_MODEL, "options": {"minScore": det_min_score,
                                                                      "maxResolution": max_resolution}},
                    "recognition": {"modelName": OCR_MODEL, "options": {"minScore": rec_min_score}}}}


def predict(service: Service, entries: Any, image: bytes | None = None, text: str | None = None) -> httpx.Response:
    """As immich's server posts it: FormData with `entries` and a Blob `image` (or a `text` string), no headers."""
    data = {"entries": entries if isinstance(entries, str) else json.dumps(entries)}
    if text is not None:
        data["text"] = text
    files = {"image": ("blob", image, "application/octet-stream")} if image is not None else None
    return httpx.post(f"{service.url}/predict", data=data, files=files, timeout=180)


def answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    return response.json()


def mt(service: Service, route: str, **kwargs: Any) -> Any:
    response = httpx.post(f"{service.url}{route}", headers=HEADERS, timeout=180, **kwargs)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert "msg" not in body, body
    return body["result"]


# faces: the fixtures' photos (licensed det_2.5g served) and uploads the tests make (whichever detector is served)
FACE_PHOTOS = ("obama.jpg", "biden.jpg", "astronaut.png")
MADE_FACES = ("made-1", "made-2")
# OCR: the fixtures' images and pages the tests render
OCR_IMAGES = ("en.jpg", "ch_en_num.jpg", "japan.jpg")
RENDERED = ("rendered-page", "rendered-photo")


def face_upload(fixtures: Path, case: str) -> tuple[bytes, int | None]:
    """The upload of a faces case and, where the tests made it for the stand-in, its face count.

    A photo is read first (absent: skipped naming it), then needs det_2.5g (absent: skipped naming it). The made
    ones are the stand-in's bright squares (one in a landscape image; three) or, where the licensed det_2.5g is
    served (to which squares are no faces), insightface's t1.jpg from its PyPI package as it comes and as a grayscale PNG."""
    if case in FACE_PHOTOS:
        data = (fixtures / "images" / "faces" / case).read_bytes()
        detector_path(fixtures, FACES_DETECTOR)
        return data, None
    first = case == MADE_FACES[0]
    if real_detector_present(fixtures, FACES_DETECTOR):
        group = Image.open(io.BytesIO(t1_bytes()))
        return (t1_bytes() if first else encode_image(group.convert("L"))), None
    if first:
        return standin_spots_image([(200, 136)], size=(640, 480)), 1
    return standin_spots_image([(96, 96), (320, 320), (504, 160)]), 3


def one_face(fixtures: Path) -> bytes:
    """An upload with a face for the detector served: obama.jpg with det_2.5g, else the stand-in's square."""
    if real_detector_present(fixtures, FACES_DETECTOR):
        return (fixtures / "images" / "faces" / "obama.jpg").read_bytes()
    return standin_face_image()


def ocr_upload(fixtures: Path, case: str) -> bytes:
    """A fixture OCR image (absent: skipped naming it), the rendered five-line page, or the rendered sign photo."""
    if case == "rendered-page":
        return samples("rendered", fixtures)["page"].data
    if case == "rendered-photo":
        return bench_photo()  # 1280x960, English lines at five sizes on a noisy gradient
    return (fixtures / "images" / "ocr" / case).read_bytes()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size  # as decoded, without the EXIF turn


def test_ping(immich_service: Service) -> None:
    response = httpx.get(f"{immich_service.url}/ping", timeout=5)
    assert response.status_code == 200 and response.text == "pong"
    assert response.headers["content-type"].startswith("text/plain")


def test_clip_image_is_the_clip_img_vector(immich_service: Service) -> None:
    orjson = pytest.importorskip("orjson")
    data = encode_image(photo_background((640, 480)), "JPEG", quality=90)
    body = answer(predict(immich_service, CLIP_VISUAL, image=data))
    vector = client.clip_answer(body, image=True)
    assert (body["imageWidth"], body["imageHeight"]) == size_of(data)
    reference = [float(v) for v in mt(immich_service, "/clip/img", files={"file": ("photo.jpg", data)})]
    assert len(vector) == len(reference) == 512
    assert np.abs(np.array(vector) - np.array(reference)).max() <= 1e-6
    # immich-ml's string: orjson.dumps of the float32 output
    assert body["clip"] == orjson.dumps(np.array(vector, np.float32), option=orjson.OPT_SERIALIZE_NUMPY).decode()


def test_clip_text_is_the_clip_txt_vector(immich_service: Service) -> None:
    body = answer(predict(immich_service, CLIP_TEXTUAL, text="a photo of a dog"))
    vector = client.clip_answer(body, image=False)
    reference = [float(v) for v in mt(immich_service, "/clip/txt", json={"text": "a photo of a dog"})]
    assert np.abs(np.array(vector) - np.array(reference)).max() <= 1e-6
    other = client.clip_answer(answer(predict(immich_service, CLIP_TEXTUAL, text="a red car")), image=False)
    assert np.abs(np.array(other) - np.array(vector)).max() > 1e-3, "a different text, a different vector"


@pytest.mark.parametrize("name", FACE_PHOTOS + MADE_FACES)
def test_faces_are_the_represent_faces(immich_service: Service, fixtures: Path, name: str) -> None:
    data, count = face_upload(fixtures, name)
    response = predict(immich_service, FACES, image=data)
    body = answer(response)
    faces = client.faces_answer(body)
    assert (body["imageWidth"], body["imageHeight"]) == size_of(data)
    reference = mt(immich_service, "/represent", files={"file": (name, data)})  # FACE_MIN_SCORE=0.7 too
    assert faces and len(faces) == len(reference)
    assert count is None or len(faces) == count
    for face, ref in zip(faces, reference):
        area = ref["facial_area"]
        assert face["box"] == {"x1": area["x"], "y1": area["y"], "x2": area["x"] + area["w"], "y2": area["y"] + area["h"]}
        assert abs(face["score"] - ref["face_confidence"]) <= 1e-6
        assert np.abs(np.array(face["embedding"]) - np.array(ref["embedding"])).max() <= 1e-6
    # boxes rounded, written as floats (immich: float32 `.round()` through orjson)
    assert re.findall(r'"x1":(-?[\d.]+)', response.text) and all(
        re.fullmatch(r"-?\d+\.0", v) for v in re.findall(r'"[xy][12]":(-?[^,}]+)', response.text)
    )


def test_no_face_is_an_empty_list(immich_service: Service) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(buffer, format="JPEG")  # no face for either detector
    body = answer(predict(immich_service, FACES, image=buffer.getvalue()))
    assert body == {"facial-recognition": [], "imageHeight": 240, "imageWidth": 320}


@pytest.mark.parametrize("name", OCR_IMAGES + RENDERED)
def test_ocr_is_the_ocr_route_at_the_same_threshold(immich_service: Service, fixtures: Path, name: str) -> None:
    data = ocr_upload(fixtures, name)
    width, height = size_of(data)
    body = answer(predict(immich_service, ocr_entries(rec_min_score=0.9), image=data))  # /ocr's threshold
    lines = client.ocr_answer(body)
    assert (body["imageWidth"], body["imageHeight"]) == (width, height)
    reference = mt(immich_service, "/ocr", files={"file": (name, data)})
    assert lines and sorted(line.text for line in lines) == sorted(reference["texts"])
    by_text = {}
    for text, box, score in zip(reference["texts"], reference["boxes"], reference["scores"]):
        by_text.setdefault(text, []).append((box, score))
    for line in lines:
        # a text read twice (the rendered photo repeats its lines) pairs with its nearest box of that text
        candidates = by_text[line.text]
        box, score = min(candidates, key=lambda c: abs(line.points[0] * width - float(c[0]["x"]))
                         + abs(line.points[1] * height - float(c[0]["y"])))
        candidates.remove((box, score))
        # the top-left corner in pixels: immich's normalised box times the image size
        assert abs(line.points[0] * width - float(box["x"])) <= 0.01 and abs(line.points[1] * height - float(box["y"])) <= 0.01
        assert f"{line.text_score:.2f}" == score and 0.5 <= line.box_score <= 1.0
    # immich's defaults (recognition minScore 0.8) keep at least these lines
    default = client.ocr_answer(answer(predict(immich_service, ocr_entries(), image=data)))
    assert {line.text for line in lines} <= {line.text for line in default}
    if name == "rendered-page":
        assert sorted(line.text for line in default) == sorted(ENGLISH_LINES)


@pytest.mark.parametrize("name", ["ch_en_num.jpg", "rendered-photo"])
def test_ocr_max_resolution_and_thresholds_reach_the_model(immich_service: Service, fixtures: Path, name: str) -> None:
    data = ocr_upload(fixtures, name)
    strict = client.ocr_answer(answer(predict(immich_service, ocr_entries(rec_min_score=0.999), image=data)))
    loose = client.ocr_answer(answer(predict(immich_service, ocr_entries(rec_min_score=0.5), image=data)))
    assert len(strict) < len(loose)
    assert all(line.text_score > 0.999 for line in strict)
    none = client.ocr_answer(answer(predict(immich_service, ocr_entries(det_min_score=1.0), image=data)))
    assert none == []
    small = answer(predict(immich_service, ocr_entries(max_resolution=64), image=data))
    assert small["ocr"]["text"] != answer(predict(immich_service, ocr_entries(), image=data))["ocr"]["text"]


def test_small_image_gives_four_empty_lists(immich_service: Service) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (31, 100), "white").save(buffer, format="PNG")
    body = answer(predict(immich_service, ocr_entries(), image=buffer.getvalue()))
    assert body == {"ocr": {"text": [], "box": [], "boxScore": [], "textScore": []}, "imageHeight": 100, "imageWidth": 31}


def test_predict_is_counted_in_metrics(immich_service: Service) -> None:
    predict(immich_service, CLIP_TEXTUAL, text="counted")
    metrics = httpx.get(f"{immich_service.url}/metrics", headers=HEADERS, timeout=10).text
    assert re.search(r'mtphotos_requests_total\{outcome="ok",route="/predict"\} [1-9]', metrics), metrics[-2000:]
