"""`/predict` is off unless IMMICH_ML=true, and limited to IMMICH_ML_ALLOW's networks: the real adapter over HTTP
(both answers come before any inference, so no Triton server is needed behind it)."""

from __future__ import annotations

import json

import httpx
import pytest

from adapter import Settings
from tests.harness import live_adapter

pytestmark = pytest.mark.e2e

ENTRIES = json.dumps({"clip": {"textual": {"modelName": "ViT-B-32__openai"}}})
UNREACHABLE = "127.0.0.1:9"  # nothing listens: /predict must answer before asking it anything


def post(url: str, **form: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", data={"entries": ENTRIES, **form}, timeout=30)


def test_off_by_default() -> None:
    with live_adapter(Settings.from_env({}, triton_url=UNREACHABLE)) as url:
        response = post(url, text="a dog")
        assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
        assert httpx.get(f"{url}/ping", timeout=5).text == "pong", "/ping is the MT Photos route too"


@pytest.mark.parametrize(("allow", "status"), [("10.0.0.0/8,192.168.0.0/16", 403), ("10.0.0.0/8, 127.0.0.0/8", 400),
                                               ("", 400), ("::1/128,127.0.0.1/32", 400)])
def test_allow_list(allow: str, status: int) -> None:
    env = {"IMMICH_ML": "true", "IMMICH_ML_ALLOW": allow}
    with live_adapter(Settings.from_env(env, triton_url=UNREACHABLE)) as url:
        response = post(url)  # no text: 400 once past the allow-list
        assert response.status_code == status, response.text
        if status == 403:
            assert response.json() == {"detail": "Forbidden"}
            metrics = httpx.get(f"{url}/metrics", headers={"api-key": Settings().api_auth_key}, timeout=5).text
            assert 'route="/predict"' in metrics and "http_403" in metrics


def test_a_wrong_allow_list_stops_the_start() -> None:
    with pytest.raises(ValueError, match="IMMICH_ML_ALLOW"):
        Settings.from_env({"IMMICH_ML": "true", "IMMICH_ML_ALLOW": "10.0.0.0/33"})
