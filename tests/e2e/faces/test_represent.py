"""`POST /represent` through the real adapter and the real Triton server, over HTTP (the plumbing on the
stand-in detector where the licensed one is absent; what real faces give only with it)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from export import faces as faces_export
from mt_photos_triton.pipelines import faces as pipeline
from tests.e2e.service.support import png_claiming
from tests.e2e.faces.conftest import Samples
from tests.faces_support import FIXTURE_FACES, encode, exif6, generated_cases, t1_bytes

pytestmark = pytest.mark.e2e

HEADERS = {"api-key": "mt_photos_ai_extra"}
CONFIDENCE_TOLERANCE = 1e-4
MIN_COSINE = 0.9999
MSG_INVALID = "The uploaded file is not a valid image format or is corrupted."
MSG_TOO_LARGE = "height or width out of range"
# the model name the conftest exports the pack as: /check and /represent report what Triton serves
SERVED_AS = "e2e"


def post_represent(url: str, data: bytes, filename: str = "upload.jpg") -> dict:
    response = httpx.post(f"{url}/represent", headers=HEADERS, files={"file": (filename, data)}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


@pytest.fixture(scope="module")
def service(faces_models: Path, adapter_url: str) -> str:
    return adapter_url


def test_one_face_on_each_portrait_six_on_t1_none_on_blank(real_faces: Path, service: str, fixtures: Path) -> None:
    counts = {}
    for name in FIXTURE_FACES:
        counts[name] = len(post_represent(service, (fixtures / "images" / "faces" / name).read_bytes(), name)["result"])
    counts["t1.jpg"] = len(post_represent(service, t1_bytes())["result"])
    counts["blank.png"] = len(post_represent(service, generated_cases(fixtures)["blank.png"], "blank.png")["result"])
    print(f"\nfaces over HTTP (FACE_MIN_SCORE 0.65): {counts}")
    assert all(counts[name] == 1 for name in FIXTURE_FACES), counts
    assert counts["t1.jpg"] == 6
    assert counts["blank.png"] == 0


def test_areas_and_confidences_equal_the_reference_service(real_faces: Path, service: str, fixtures: Path) -> None:
    faces = fixtures / "images" / "faces"
    recorded = json.loads((faces / "reference_represent_det_2.5g.json").read_text())["responses"]
    worst = 0.0
    for name, expected in recorded.items():
        body = post_represent(service, (faces / name).read_bytes(), name)
        assert body["detector_backend"] == "insightface"
        assert body["recognition_model"] == SERVED_AS
        got = body["result"]
        assert [f["facial_area"] for f in got] == [f["facial_area"] for f in expected], name
        for mine, theirs in zip(got, expected):
            assert isinstance(mine["face_confidence"], float)
            assert len(mine["embedding"]) == theirs["embedding_len"]
            worst = max(worst, abs(mine["face_confidence"] - theirs["face_confidence"]))
    print(f"\nfaces vs recorded reference answers: {len(recorded)} images, areas equal, max |confidence| {worst:.3g}")
    assert worst <= CONFIDENCE_TOLERANCE


def test_embeddings_over_http_are_the_pipeline_numbers(service: str, faces_models: Path, samples: Samples) -> None:
    data = samples.many
    body = post_represent(service, data)
    local = faces_export.run_exported(faces_models, [pipeline.decode_image(data)], [0.65])[0]
    assert len(body["result"]) == len(local.faces) == samples.many_count
    scores = [f["face_confidence"] for f in body["result"]]
    assert scores == sorted(scores, reverse=True)
    for face, box, vector in zip(body["result"], local.faces.boxes, local.embeddings):
        assert face["facial_area"] == pipeline.facial_area(box)
        sent = np.array(face["embedding"], np.float64)
        assert all(isinstance(v, float) for v in face["embedding"])
        cosine = float(sent @ vector / (np.linalg.norm(sent) * np.linalg.norm(vector)))
        assert cosine >= MIN_COSINE
        # raw (not L2-normalised), each number the shortest decimal of a float32 (`0.33333334`)
        assert not np.isclose(np.linalg.norm(sent), 1.0)
        assert all(float(str(np.float32(v))) == v for v in face["embedding"])


def test_face_min_score_changes_the_count(faces_models: Path, adapter_factory, samples: Samples) -> None:
    # one face scoring between the two thresholds (biden.jpg with det_2.5g, a grey square with the stand-in)
    counts = {}
    for threshold in ("0.65", "0.8"):
        with adapter_factory(FACE_MIN_SCORE=threshold) as url:
            counts[threshold] = len(post_represent(url, samples.middling)["result"])
            check = httpx.post(f"{url}/check", headers=HEADERS).json()
            assert check["facial_min_score"] == float(threshold)
            assert check["recognition_model"] == SERVED_AS
    print(f"\nFACE_MIN_SCORE on one face scoring between them: {counts}")
    assert counts == {"0.65": 1, "0.8": 0}


def test_exif_orientation_and_gif_first_frame(service: str, samples: Samples) -> None:
    face = Image.open(io.BytesIO(samples.one)).convert("RGB")
    upright = post_represent(service, samples.one)["result"]
    rotated = post_represent(service, exif6(face))["result"]
    assert len(upright) == len(rotated) == 1
    # the EXIF-rotated copy is read upright: the same (off-centre) face at (about) the same place
    assert abs(rotated[0]["facial_area"]["x"] - upright[0]["facial_area"]["x"]) <= 3
    assert abs(rotated[0]["facial_area"]["y"] - upright[0]["facial_area"]["y"]) <= 3
    frames = [face, Image.new("RGB", face.size)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert len(post_represent(service, gif.getvalue(), "face.gif")["result"]) == 1


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        (b"", MSG_INVALID),
        (b"this is not an image", MSG_INVALID),
        (encode(Image.new("RGB", (64, 64)), "PNG")[:60] + b"\x00" * 200, MSG_INVALID),  # header fine, body broken
        (encode(Image.new("RGB", (8, 8)), "ICO"), MSG_INVALID),
        (encode(Image.new("L", (10001, 8)), "PNG"), MSG_TOO_LARGE),
        (png_claiming(60000, 60000), MSG_TOO_LARGE),  # 3.6 Gpx claimed by 45 bytes: over the pixel budget
    ],
    ids=["empty", "garbage", "corrupt-body", "ico", "too-wide", "pixel-bomb"],
)
def test_bad_inputs_get_the_spec_body_and_the_server_keeps_answering(
    service: str, samples: Samples, data: bytes, msg: str
) -> None:
    assert post_represent(service, data) == {"result": [], "msg": msg}
    assert len(post_represent(service, samples.one)["result"]) == 1


def test_missing_part_and_wrong_key(service: str) -> None:
    missing = httpx.post(f"{service}/represent", headers=HEADERS, files={"other": ("a", b"x")})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "file"]
    wrong = httpx.post(f"{service}/represent", headers={"api-key": "nope"}, files={"file": ("a", b"x")})
    assert wrong.status_code == 401
