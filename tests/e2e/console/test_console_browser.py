"""The console in headless Chromium against the real service (embedded Triton, all three families exported):
models and live figures shown, faces and text boxed on real photos (on the stand-ins' images from a plain clone),
two images ranked for a text, a wrong key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from mt_photos_triton.repository import read_config
from tests.e2e.console.cdp import Page
from tests.e2e.console.conftest import Uploads
from tests.e2e.console.support import (ROWS_JS, boxes, families, message, requests_of, route_requests, set_value,
                                       upload)
from tests.e2e.service.support import HEADERS, KEY, Service

pytestmark = pytest.mark.e2e

PAGE_LIMIT_BYTES = 100 * 1024
FIRST_PAINT_AIM_MS = 200


def test_page_weight_and_first_paint(service: Service, page: Page) -> None:
    html = httpx.get(f"{service.url}/", timeout=10).content
    status = httpx.get(f"{service.url}/console/status", timeout=10).content
    page.open(f"{service.url}/")
    paint = page.wait_for("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
    transfer = page.evaluate("performance.getEntriesByType('navigation')[0].transferSize")
    print(f"\nconsole page: {len(html)} bytes of HTML ({transfer} transferred), status JSON {len(status)} bytes; "
          f"first contentful paint {paint:.0f} ms (aim < {FIRST_PAINT_AIM_MS} ms)")
    assert len(html) + len(status) < PAGE_LIMIT_BYTES


def test_models_and_families_shown_are_what_triton_serves(service: Service, console_repository: Path,
                                                          page: Page) -> None:
    page.open(f"{service.url}/")
    assert {name: f["state"] for name, f in families(page).items()} == {"ocr": "ready", "faces": "ready",
                                                                        "clip": "ready"}
    page.wait_for("document.querySelectorAll('#models tbody tr').length > 5")
    rows = {row["name"]: row for row in page.evaluate(ROWS_JS)}
    assert page.evaluate("document.querySelector('#triton-state').dataset.ready") == "yes"
    for name in ("faces", "face_det", "face_rec", "ocr", "ocr_det", "ocr_rec", "clip_image", "clip_visual"):
        config = read_config(console_repository / name)
        assert rows[name]["batch"] == str(config.max_batch_size), name
        assert rows[name]["cells"][2] == "READY", name
        for group in config.instance_group:
            assert f"{group.count} × CPU" in rows[name]["cells"][6], name
    assert rows["clip_visual"]["cells"][3] == "onnxruntime" and rows["faces"]["cells"][3] == "python"
    assert rows["clip_visual"]["cells"][7] == "16"  # the stand-in CLIP's vector size
    assert rows["faces"]["cells"][7] == "512"


def test_faces_and_text_are_drawn_and_counted(service: Service, page: Page, uploads: Uploads, tmp_path: Path) -> None:
    face_photo, text_photo = uploads.face, uploads.text
    before = {route: requests_of(service.url, route) for route in ("/represent", "/ocr")}
    page.open(f"{service.url}/")
    set_value(page, "#key", KEY)

    upload(page, "#face-file", face_photo)
    assert message(page, "#face-msg")["kind"] == "ok"
    drawn = boxes(page, "#face-svg")
    answer = httpx.post(f"{service.url}/represent", headers=HEADERS, timeout=60,
                        files={"file": (face_photo.name, face_photo.read_bytes(), "image/jpeg")}).json()["result"]
    assert len(drawn) == len(answer) == 1
    area = answer[0]["facial_area"]
    assert (drawn[0]["x"], drawn[0]["y"], drawn[0]["w"], drawn[0]["h"]) == (area["x"], area["y"], area["w"], area["h"])
    assert drawn[0]["label"] == f"{answer[0]['face_confidence']:.3f}"

    upload(page, "#ocr-file", text_photo)
    assert message(page, "#ocr-msg")["kind"] == "ok"
    drawn = boxes(page, "#ocr-svg")
    listed = page.evaluate("[...document.querySelectorAll('#ocr-texts li')].map(li => li.firstChild.textContent.trim())")
    assert uploads.must_read in listed and len(drawn) == len(listed) >= uploads.min_lines
    assert [box["label"] for box in drawn] == listed
    assert all(box["w"] > 0 and box["h"] > 0 for box in drawn)

    # the live figures catch up on the next refresh: what the page shows is what /metrics says
    expected = {"/represent": before["/represent"] + 2, "/ocr": before["/ocr"] + 1}
    for route, count in expected.items():
        page.wait_for(f"(e => e && +e.dataset.requests >= {count})(document.querySelector("
                      f"'#routes tr[data-route=\"{route}\"] [data-requests]'))", timeout=15)
        assert route_requests(page, route) == requests_of(service.url, route) == count
    figures = page.evaluate("({rpm: document.querySelector('#fig-rpm').textContent, "
                            "adapter: document.querySelector('#fig-mem-adapter').textContent, "
                            "triton: document.querySelector('#fig-mem-triton').textContent})")
    assert float(figures["rpm"]) > 0 and figures["adapter"].endswith("MiB") and figures["triton"].endswith("MiB")
    shot = page.screenshot(tmp_path / "console-faces-ocr.png")
    print(f"\nscreenshot: {shot}")


def solid(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (96, 96), colour).save(path)
    return path


def vector(response: httpx.Response) -> np.ndarray:
    return np.array([float(v) for v in response.json()["result"]])


def test_two_images_are_ranked_as_the_routes_vectors_say(service: Service, page: Page, tmp_path: Path) -> None:
    images = [solid(tmp_path / "red.png", (220, 20, 30)), solid(tmp_path / "blue.png", (20, 40, 220))]
    page.open(f"{service.url}/")
    set_value(page, "#key", KEY)
    page.set_files("#clip-files", images)
    set_value(page, "#clip-text", "红色")
    page.evaluate("document.querySelector('#clip-run').click(), true")
    assert message(page, "#clip-msg")["kind"] == "ok"
    shown = page.evaluate("[...document.querySelectorAll('#clip-rank li')].map(li => [li.dataset.name, +li.dataset.score])")

    query = vector(httpx.post(f"{service.url}/clip/txt", headers=HEADERS, json={"text": "红色"}, timeout=60))
    expected = []
    for path in images:
        image = vector(httpx.post(f"{service.url}/clip/img", headers=HEADERS, timeout=60,
                                  files={"file": (path.name, path.read_bytes(), "image/png")}))
        expected.append((path.name, float(image @ query / np.linalg.norm(image) / np.linalg.norm(query))))
    expected.sort(key=lambda item: -item[1])
    assert [name for name, _ in shown] == [name for name, _ in expected]
    assert [score for _, score in shown] == pytest.approx([score for _, score in expected], abs=1e-6)
    print(f"\nranking for 红色: {json.dumps(shown)}")
    page.screenshot(tmp_path / "console-clip.png")


def test_a_wrong_key_says_so_and_draws_nothing(service: Service, page: Page, uploads: Uploads, tmp_path: Path) -> None:
    page.open(f"{service.url}/")
    set_value(page, "#key", "not-the-key")
    upload(page, "#face-file", uploads.face)
    said = message(page, "#face-msg")
    assert said["kind"] == "key" and "Wrong API key" in said["text"]
    assert boxes(page, "#face-svg") == [] and page.evaluate("document.querySelector('#face-stage img').hidden")
    upload(page, "#ocr-file", uploads.text)
    assert message(page, "#ocr-msg")["kind"] == "key"
    assert boxes(page, "#ocr-svg") == [] and page.evaluate("document.querySelectorAll('#ocr-texts li').length") == 0
    page.set_files("#clip-files", [solid(tmp_path / "a.png", (1, 2, 3)), solid(tmp_path / "b.png", (3, 2, 1))])
    page.evaluate("document.querySelector('#clip-run').click(), true")
    assert message(page, "#clip-msg")["kind"] == "key"
    assert page.evaluate("document.querySelectorAll('#clip-rank li').length") == 0
    assert page.evaluate("sessionStorage.getItem('console-key')") == "not-the-key"
    assert page.evaluate("localStorage.getItem('console-key')") is None


def test_the_page_follows_the_browser_language_and_switches(service: Service, page: Page) -> None:
    agent = page.call("Browser.getVersion")["userAgent"]
    page.call("Network.setUserAgentOverride", userAgent=agent, acceptLanguage="zh-CN,zh")
    try:
        page.open(f"{service.url}/")
        page.evaluate("localStorage.removeItem('console-lang'), location.reload(), true")
        page.wait_for("document.readyState === 'complete' && document.querySelectorAll('#families .fam').length")
        assert page.evaluate("document.documentElement.dataset.lang") == "zh"
        assert page.evaluate("document.querySelector('h2').textContent") == "模型家族"
        assert "就绪" in families(page)["clip"]["text"]
        page.evaluate("document.querySelector('[data-set-lang=en]').click(), true")
        assert page.evaluate("document.querySelector('h2').textContent") == "Families"
        assert "ready" in families(page)["clip"]["text"]
    finally:
        page.evaluate("localStorage.removeItem('console-lang'), true")
        page.call("Network.setUserAgentOverride", userAgent=agent, acceptLanguage="en-US,en")
