"""`POST /predict` with a fake inference backend: what is sent to each model, the exact answer bytes, refusals."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from adapter import Settings, create_app
from adapter.backend import BackendUnavailable, InferenceFailed
from mt_photos_triton.errors import INVALID_IMAGE, INVALID_INPUT
from tests.unit.adapter.fakes import FakeBackend

SERVED = {"clip_image": {"served_model": "ViT-B-32__openai"}, "clip_text": {"served_model": "ViT-B-32__openai"},
          "faces": {"served_model": "buffalo_l"}, "ocr": {"served_model": "PP-OCRv5_mobile"}}


def jpeg(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "JPEG")
    return out.getvalue()


def backend(**answers: dict[str, np.ndarray]) -> FakeBackend:
    return FakeBackend(answers=dict(answers), parameters=SERVED)


def client_for(fake: FakeBackend, **env: str) -> TestClient:
    settings = Settings.from_env({"IMMICH_ML": "true", **env})
    return TestClient(app=create_app(settings, backend_factory=lambda _: fake))


def post(client: TestClient, entries: object, image: bytes | None = None, text: str | None = None):
    data = {"entries": entries if isinstance(entries, str) else json.dumps(entries)}
    if text is not None:
        data["text"] = text
    return client.post("/predict", data=data, files={"image": ("blob", image)} if image is not None else None)


def test_off_unless_turned_on() -> None:
    with TestClient(app=create_app(Settings.from_env({}), backend_factory=lambda _: backend())) as client:
        assert post(client, {}, text="x").status_code == 404


def test_clip_image_bytes_and_size() -> None:
    fake = backend(clip_image={"embedding": np.array([[0.5, -1.25e-07, 0.1]], np.float32)})
    with client_for(fake) as client:
        response = post(client, {"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}, image=jpeg(40, 30))
    assert response.status_code == 200
    assert response.content == b'{"clip":"[0.5,-1.25e-7,0.1]","imageHeight":30,"imageWidth":40}'
    assert [model for model, _ in fake.calls] == ["clip_image"]


def test_clip_text_sends_the_language_only_when_given() -> None:
    fake = backend(clip_text={"embedding": np.array([[1.0, 0.0]], np.float32)})
    with client_for(fake) as client:
        plain = post(client, {"clip": {"textual": {"modelName": "ViT-B-32__openai", "options": {}}}}, text="a dog")
        german = post(client, {"clip": {"textual": {"modelName": "ViT-B-32__openai", "options": {"language": "de"}}}},
                      text="ein hund")
    assert plain.content == b'{"clip":"[1.0,0.0]"}' and german.status_code == 200
    (_, first), (_, second) = fake.calls
    assert set(first) == {"text"} and first["text"].tolist() == [[b"a dog"]]
    assert second["language"].tolist() == [[b"de"]]


def test_faces_min_score_sent_and_boxes_as_floats() -> None:
    fake = backend(faces={
        "boxes": np.array([[[10.4, 20.6, 50.5, 80.5]]], np.float32), "scores": np.array([[0.875]], np.float32),
        "embeddings": np.array([[[0.25, -0.5]]], np.float32), "count": np.array([[1]], np.int32),
    })
    entries = {"facial-recognition": {"detection": {"modelName": "buffalo_l", "options": {"minScore": 0.55}},
                                      "recognition": {"modelName": "buffalo_l"}}}
    with client_for(fake) as client:
        response = post(client, entries, image=jpeg())
    assert response.content == (b'{"facial-recognition":[{"boundingBox":{"x1":10.0,"y1":21.0,"x2":50.0,"y2":80.0},'
                                b'"embedding":"[0.25,-0.5]","score":0.875}],"imageHeight":30,"imageWidth":40}')
    assert fake.calls[0][1]["min_score"].tolist() == [[pytest.approx(0.55)]]


def test_ocr_options_are_the_models_inputs() -> None:
    fake = backend(ocr={
        "texts": np.array([[b"B", b"A"]], dtype=np.object_), "scores": np.array([[0.95, 0.9]], np.float32),
        "boxes": np.array([[[[20, 0], [40, 0], [40, 10], [20, 10]], [[0, 3], [10, 3], [10, 10], [0, 10]]]], np.float32),
        "count": np.array([[2]], np.int32), "box_scores": np.array([[0.75, 0.5]], np.float32),
        "reading_order": np.array([[1, 0]], np.int32), "image_size": np.array([[40, 30]], np.int32),
    })
    entries = {"ocr": {"detection": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.5, "maxResolution": 736}},
                       "recognition": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.8}}}}
    with client_for(fake) as client:
        response = post(client, entries, image=jpeg())
    body = json.loads(response.content)
    assert body["ocr"]["text"] == ["A", "B"] and body["ocr"]["boxScore"] == [0.5, 0.75]
    assert body["ocr"]["box"][:8] == [0.0, 0.1, 0.25, 0.1, 0.25, pytest.approx(1 / 3), 0.0, pytest.approx(1 / 3)]
    sent = fake.calls[0][1]
    assert sent["max_resolution"].dtype == np.int32 and sent["max_resolution"].tolist() == [[736]]
    assert sent["box_threshold"].tolist() == [[0.5]] and sent["min_text_score"].tolist() == [[pytest.approx(0.8)]]


@pytest.mark.parametrize(("failure", "status", "detail"), [
    (InferenceFailed("clip_image", INVALID_IMAGE, "bad"), 422, "Invalid image."),
    (InferenceFailed("clip_image", INVALID_INPUT, "bad"), 422, "Invalid request format."),
    (BackendUnavailable("down"), 503, "Inference server unavailable."),
    (RuntimeError("secret text"), 500, "Internal Server Error"),
])
def test_failures_in_immichs_shape(failure: Exception, status: int, detail: str) -> None:
    fake = backend()
    fake.failure = failure  # type: ignore[assignment]
    with client_for(fake) as client:
        response = post(client, {"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}, image=jpeg())
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_allow_list() -> None:
    with client_for(backend(), IMMICH_ML_ALLOW="10.0.0.0/8") as client:  # the test client's address is not in it
        assert post(client, {}, text="x").status_code == 403
