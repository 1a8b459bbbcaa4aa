"""`POST /represent` with a fake inference backend: exact bytes, what is sent, error mapping."""

from __future__ import annotations

import io

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from adapter import Settings, create_app
from adapter.backend import BackendUnavailable, InferenceFailed, ModelUnavailable
from mt_photos_triton.errors import INVALID_IMAGE
from tests.unit.adapter.fakes import FakeBackend

HEADERS = {"api-key": "mt_photos_ai_extra"}


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 20, 30)).save(out, "JPEG")
    return out.getvalue()


def two_faces() -> dict[str, np.ndarray]:
    return {
        "boxes": np.array([[[-2.5, 3.5, 10.5, 20.4], [100.0, 50.0, 150.0, 120.0]]], np.float32),
        "scores": np.array([[0.8765432238578796, 0.7]], np.float32),
        "embeddings": np.array([[[1 / 3, 12.0, -1.25e-05], [0.0, 0.0, 0.0]]], np.float32),
        "count": np.array([[1]], np.int32),  # second row is padding
    }


def client_for(backend: FakeBackend, **env: str) -> TestClient:
    settings = Settings.from_env(env)
    return TestClient(app=create_app(settings, backend_factory=lambda _: backend))


def test_exact_body_and_the_request_sent() -> None:
    # recognition_model: what the faces config says it serves (export writes it), not a variable of the adapter
    backend = FakeBackend(answers={"faces": two_faces()}, parameters={"faces": {"served_model": "antelopev2"}})
    with client_for(backend, FACE_MIN_SCORE="0.7", FACE_RECOGNITION_MODEL_NAME="buffalo_s") as client:
        response = client.post("/represent", headers=HEADERS, files={"file": ("a.jpg", jpeg())})
    assert response.status_code == 200
    assert response.content == (
        b'{"detector_backend":"insightface","recognition_model":"antelopev2","result":[{"embedding":'
        b'[0.33333334,12.0,-1.25e-05],"facial_area":{"x":-2,"y":4,"w":12,"h":16},'
        b'"face_confidence":0.8765432238578796}]}'
    )
    model, inputs = backend.calls[0]
    assert model == "faces"
    assert inputs["image_bytes"].shape == (1, 1) and inputs["image_bytes"][0, 0] == jpeg()
    assert inputs["min_score"].dtype == np.float32 and inputs["min_score"].tolist() == [[pytest.approx(0.7)]]


def test_no_face_is_an_empty_result() -> None:
    empty = {
        "boxes": np.zeros((1, 0, 4), np.float32),
        "scores": np.zeros((1, 0), np.float32),
        "embeddings": np.zeros((1, 0, 512), np.float32),
        "count": np.zeros((1, 1), np.int32),
    }
    with client_for(FakeBackend(answers={"faces": empty})) as client:
        body = client.post("/represent", headers=HEADERS, files={"file": ("a.jpg", jpeg())}).json()
    assert body == {"detector_backend": "insightface", "recognition_model": "buffalo_l", "result": []}


@pytest.mark.parametrize(
    ("error", "msg"),
    [
        (
            InferenceFailed("faces", INVALID_IMAGE, "faces: invalid_image: x"),
            "The uploaded file is not a valid image format or is corrupted.",
        ),
        (BackendUnavailable("down"), "inference server unavailable"),
        (ModelUnavailable("faces"), "model 'faces' is not available: run `mt-photos-triton export faces`"),
    ],
)
def test_backend_errors_become_fixed_messages(error: Exception, msg: str) -> None:
    with client_for(FakeBackend(failure=error)) as client:
        body = client.post("/represent", headers=HEADERS, files={"file": ("a.jpg", jpeg())}).json()
    assert body == {"result": [], "msg": msg}


def test_sides_over_10000_px_are_refused_from_the_header() -> None:
    out = io.BytesIO()
    Image.new("L", (3, 10001)).save(out, "PNG")
    backend = FakeBackend(answers={"faces": two_faces()})
    with client_for(backend) as client:
        body = client.post("/represent", headers=HEADERS, files={"file": ("tall.png", out.getvalue())}).json()
    assert body == {"result": [], "msg": "height or width out of range"}
    assert backend.calls == []


def test_an_unexpected_answer_is_the_generic_message(caplog: pytest.LogCaptureFixture) -> None:
    # a malformed model answer is the same "internal error" (with a logged traceback) as on every route
    with client_for(FakeBackend(answers={"faces": {"count": np.array([[1]], np.int32)}})) as client:
        body = client.post("/represent", headers=HEADERS, files={"file": ("a.jpg", jpeg())}).json()
    assert body == {"result": [], "msg": "internal error"}
    assert any(record.exc_info for record in caplog.records if record.name == "adapter.inference")


def test_bad_bytes_are_refused_before_inference() -> None:
    backend = FakeBackend(answers={"faces": two_faces()})
    with client_for(backend) as client:
        body = client.post("/represent", headers=HEADERS, files={"file": ("a.jpg", b"nope")}).json()
    assert body == {"result": [], "msg": "The uploaded file is not a valid image format or is corrupted."}
    assert backend.calls == []
