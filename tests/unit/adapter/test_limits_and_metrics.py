"""Request-size limit, the default-key refusal, and what /metrics counts."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from adapter import Settings, create_app
from adapter.backend import Overloaded
from tests.unit.adapter.fakes import FakeBackend

KEY = "mt_photos_ai_extra"


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # Prometheus sorts labels
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_bodies_over_the_limit_get_413() -> None:
    settings = Settings.from_env({"MAX_BODY_MB": "0.01"})
    with TestClient(create_app(settings, backend_factory=lambda _: FakeBackend())) as client:
        response = client.post("/check", headers={"api-key": KEY}, content=b"x" * 20_000)
    assert response.status_code == 413
    assert list(response.json()) == ["detail"]


def test_default_key_can_be_refused() -> None:
    with pytest.raises(ValueError, match="REFUSE_DEFAULT_KEY"):
        create_app(Settings.from_env({"REFUSE_DEFAULT_KEY": "true"}))
    create_app(Settings.from_env({"REFUSE_DEFAULT_KEY": "true", "API_AUTH_KEY": "mine"}))
    with pytest.raises(ValueError, match="REFUSE_DEFAULT_KEY"):
        Settings.from_env({"REFUSE_DEFAULT_KEY": "perhaps"})


def test_metrics_count_requests_by_route_and_outcome() -> None:
    with TestClient(create_app(Settings(), backend_factory=lambda _: FakeBackend())) as client:
        for _ in range(3):
            client.post("/check", headers={"api-key": KEY})
        client.post("/check", headers={"api-key": "wrong"})
        client.get("/no/such/path")
        text = client.get("/metrics").text
    assert _metric(text, "mtphotos_requests_total", route="/check", outcome="ok") == 3
    assert _metric(text, "mtphotos_requests_total", route="/check", outcome="http_401") == 1
    assert _metric(text, "mtphotos_requests_total", route="other", outcome="http_404") == 1
    assert _metric(text, "mtphotos_rejected_total", reason="unauthorized") == 1
    assert _metric(text, "mtphotos_request_seconds_count", route="/check") == 4


def test_metrics_expose_the_served_trees_memory() -> None:
    with TestClient(create_app(Settings(), backend_factory=lambda _: FakeBackend())) as client:
        text = client.get("/metrics").text
    pss = _metric(text, "mtphotos_served_tree_memory_bytes", measure="pss")
    rss = _metric(text, "mtphotos_served_tree_memory_bytes", measure="rss")
    assert 10 * 2**20 < pss <= rss  # this test process at least (a Python interpreter with the adapter loaded)


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    return out.getvalue()


def test_outcomes_are_recorded_by_the_inference_path() -> None:
    # the outcome is what the path decided, not read back from the body: an OCR text that happens to look like
    # an error body is still "ok"
    import numpy as np

    lookalike = np.array([['{"result":[],"msg":"x"}'.encode()]], dtype=np.object_)
    answers = {"ocr": {"texts": lookalike, "scores": np.ones((1, 1), np.float32),
                       "boxes": np.zeros((1, 1, 4, 2), np.float32), "count": np.ones((1, 1), np.int32)}}
    backend = FakeBackend(answers=answers)
    with TestClient(create_app(Settings(), backend_factory=lambda _: backend)) as client:
        files = {"file": ("a.png", _png(), "image/png")}
        assert client.post("/ocr", headers={"api-key": KEY}, files=files).json()["result"]["texts"]
        client.post("/ocr", headers={"api-key": KEY}, files={"file": ("a.png", b"junk", "image/png")})
        backend.failure = Overloaded("64 in flight")
        assert client.post("/ocr", headers={"api-key": KEY}, files=files).json()["msg"] == "server busy, retry later"
        client.post("/ocr", headers={"api-key": KEY}, data={"other": "1"})
        text = client.get("/metrics").text
    assert _metric(text, "mtphotos_requests_total", route="/ocr", outcome="ok") == 1
    assert _metric(text, "mtphotos_requests_total", route="/ocr", outcome="error") == 2
    assert _metric(text, "mtphotos_requests_total", route="/ocr", outcome="http_422") == 1
    assert _metric(text, "mtphotos_errors_total", route="/ocr", reason="invalid_image") == 1
    assert _metric(text, "mtphotos_errors_total", route="/ocr", reason="busy") == 1
    assert _metric(text, "mtphotos_rejected_total", reason="busy") == 1
