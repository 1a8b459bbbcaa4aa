"""Auth, `/check`, framework errors and health, against a fake backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from adapter import Settings, create_app
from adapter.backend import ModelState
from tests.unit.adapter.fakes import FakeBackend

KEY = "mt_photos_ai_extra"
CHECK_BODY = (
    '{"result":"pass","title":"mt-photos-ai服务","help":"https://mtmt.tech/docs/advanced/ocr_api",'
    '"detector_backend":"insightface","recognition_model":"buffalo_l","facial_min_score":0.65,'
    '"facial_max_distance":0.5,"env_use_dml":false}'
).encode()


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(states=[ModelState("ocr", "READY"), ModelState("ocr_det", "READY")])


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), backend_factory=lambda _: backend)) as test_client:
        yield test_client


def test_check_answers_the_reference_bytes(client: TestClient) -> None:
    response = client.post("/check?t=123", headers={"api-key": KEY})
    assert response.status_code == 200
    assert response.content == CHECK_BODY
    assert response.headers["content-type"].startswith("application/json")


def test_check_reports_the_face_model_triton_serves() -> None:
    # the reference's variable is not what /check reports: the `served_model` parameter of the faces config is
    backend = FakeBackend(parameters={"faces": {"served_model": "antelopev2", "family": "faces"}})
    settings = Settings.from_env({"FACE_MIN_SCORE": "0.7", "FACE_RECOGNITION_MODEL_NAME": "buffalo_s"})
    with TestClient(create_app(settings, backend_factory=lambda _: backend)) as client:
        bodies = [client.post("/check", headers={"API-KEY": KEY}).json() for _ in range(3)]
    assert bodies[0]["facial_min_score"] == 0.7
    assert [body["recognition_model"] for body in bodies] == ["antelopev2"] * 3
    assert backend.config_reads == ["faces"], "read once, then cached"


def test_check_falls_back_to_the_family_default() -> None:
    # not loaded: the default, asked again next time; loaded without the parameter (an older export): the default
    backend = FakeBackend()
    with TestClient(create_app(Settings(), backend_factory=lambda _: backend)) as client:
        assert client.post("/check", headers={"api-key": KEY}).json()["recognition_model"] == "buffalo_l"
        backend.parameters["faces"] = {"family": "faces"}
        assert client.post("/check", headers={"api-key": KEY}).json()["recognition_model"] == "buffalo_l"
        backend.parameters["faces"] = {"served_model": "antelopev2"}
        assert client.post("/check", headers={"api-key": KEY}).json()["recognition_model"] == "buffalo_l"
    assert backend.config_reads == ["faces", "faces"]


def test_a_lost_server_makes_the_served_name_be_read_again() -> None:
    backend = FakeBackend(parameters={"faces": {"served_model": "antelopev2"}})
    with TestClient(create_app(Settings(), backend_factory=lambda _: backend)) as client:
        assert client.post("/check", headers={"api-key": KEY}).json()["recognition_model"] == "antelopev2"
        backend.ready = False
        assert client.get("/health/ready").status_code == 503
        backend.ready = True
        backend.parameters["faces"] = {"served_model": "buffalo_s"}
        assert client.post("/check", headers={"api-key": KEY}).json()["recognition_model"] == "buffalo_s"


def test_ping_answers_pong_without_a_key(client: TestClient) -> None:
    response = client.get("/ping")
    assert (response.status_code, response.content) == (200, b"pong")
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("headers", [{}, {"api-key": "wrong"}, {"api-key": ""}, {"api-key": KEY + " "}])
@pytest.mark.parametrize("path", ["/check", "/restart", "/restart_v2"])
def test_wrong_or_missing_key_is_401(client: TestClient, path: str, headers: dict[str, str]) -> None:
    response = client.post(path, headers=headers)
    assert response.status_code == 401, path
    assert response.content == b'{"detail":"Invalid API key"}'


def test_custom_key_is_required_and_default_refused() -> None:
    settings = Settings.from_env({"API_AUTH_KEY": "s3cret"})
    with TestClient(create_app(settings, backend_factory=lambda _: FakeBackend())) as client:
        assert client.post("/check", headers={"api-key": KEY}).status_code == 401
        assert client.post("/check", headers={"api-key": "s3cret"}).status_code == 200


def test_restart_routes_are_no_ops(client: TestClient) -> None:
    for path in ("/restart", "/restart_v2"):
        response = client.post(path, headers={"api-key": KEY})
        assert response.content == b'{"result":"pass"}'


def test_framework_errors_keep_the_detail_shape(client: TestClient) -> None:
    assert client.get("/nope").content == b'{"detail":"Not Found"}'
    response = client.get("/check", headers={"api-key": KEY})
    assert response.status_code == 405
    assert response.content == b'{"detail":"Method Not Allowed"}'
    assert "POST" in response.headers["allow"]


def test_index_and_liveness_need_no_key(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/health/live").status_code == 200


def test_ready_when_every_loaded_model_is_ready(client: TestClient) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["families"]["ocr"] == "ready"
    assert body["families"]["faces"] == "not exported: run `mt-photos-triton export faces`"


def test_not_ready_names_the_failed_model(client: TestClient, backend: FakeBackend) -> None:
    backend.states.append(ModelState("faces", "UNAVAILABLE", "load failed"))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == {"faces": "UNAVAILABLE: load failed"}


def test_not_ready_when_the_server_is_down(client: TestClient, backend: FakeBackend) -> None:
    backend.ready = False
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "server": "unavailable"}


def test_missing_files_of_a_family_exported_in_part_make_readiness_503() -> None:
    # what serve starts when ocr's weights are there and its python model is not: ocr is never loaded
    backend = FakeBackend(states=[ModelState("ocr", ""), ModelState("ocr_det", "READY"), ModelState("ocr_rec", "READY")])
    missing = {"ocr": "ocr/1/model.py has not been exported"}
    with TestClient(create_app(Settings(), backend_factory=lambda _: backend, missing=missing)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == {"ocr": "ocr/1/model.py has not been exported"}
    assert body["families"]["ocr"] == (
        "incomplete (ocr/1/model.py has not been exported): run `mt-photos-triton export ocr`")
    assert body["families"]["faces"] == "not exported: run `mt-photos-triton export faces`"


def test_backend_started_and_closed_by_the_lifespan(backend: FakeBackend) -> None:
    with TestClient(create_app(Settings(), backend_factory=lambda _: backend)) as client:
        assert backend.started and not backend.closed
        assert 'mtphotos_backend_up{url="fake:8000"} 1.0' in client.get("/metrics").text
    assert backend.closed


def test_default_key_warning_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"), TestClient(create_app(Settings(), backend_factory=lambda _: FakeBackend())):
        pass
    assert any("API_AUTH_KEY is the public default" in r.getMessage() for r in caplog.records)
