"""Size limits against the whole service (serve: embedded Triton + adapter over HTTP): no photo the reference
answers is refused, bombs still are, and memory stays bounded while several 200 MP photos arrive at once.
Also the reference's small routes (`/ping`, `/clip/txt` content types) and readiness naming a missing file."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from adapter import Settings
from tests.e2e.service.support import HEADERS, KEY, Service, png_claiming
from tests.harness import live_adapter

pytestmark = pytest.mark.e2e

TIMEOUT_S = 300.0  # a 200 MP decode takes seconds, more when the machine's cores are shared
PHONE_200MP = (16320, 12240)  # 199.8 MP, the largest phone photos
LARGE_52MP = (8000, 6500)  # both sides under 10000 px: refused before by a 50 Mpx limit
CONCURRENT = 4
MIB = 2**20


def photo_jpeg(size: tuple[int, int]) -> bytes:
    """A smooth photo-like JPEG of `size` (a small random image scaled up: cheap to make, real to decode)."""
    small = np.random.default_rng(sum(size)).integers(0, 256, (size[1] // 64, size[0] // 64, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def post_image(url: str, route: str, data: bytes) -> dict:
    response = httpx.post(f"{url}{route}", headers=HEADERS, files={"file": ("photo.jpg", data, "image/jpeg")},
                          timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text[:300]
    return response.json()


@pytest.fixture(scope="module")
def large_service(service_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("limits") / "serve.log"
    running = Service(service_repository, log, env={"INFERENCE_TIMEOUT_S": str(int(TIMEOUT_S))}).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def phone_photo() -> bytes:
    return photo_jpeg(PHONE_200MP)


def test_large_photos_are_answered_as_the_reference_answers_them(large_service: Service, phone_photo: bytes) -> None:
    url = large_service.url
    large = photo_jpeg(LARGE_52MP)
    started = time.monotonic()
    answers = {
        "8000x6500 /clip/img": post_image(url, "/clip/img", large),
        "16320x12240 /clip/img": post_image(url, "/clip/img", phone_photo),
        "8000x6500 /ocr": post_image(url, "/ocr", large),
        "8000x6500 /represent": post_image(url, "/represent", large),
    }
    print(f"\nlarge photos ({len(large) / MIB:.1f} MB and {len(phone_photo) / MIB:.1f} MB JPEGs) answered in "
          f"{time.monotonic() - started:.1f} s: " + ", ".join(f"{k}: {sorted(v)}" for k, v in answers.items()))
    for name, body in answers.items():
        assert "msg" not in body, f"{name}: {body}"
    assert len(answers["16320x12240 /clip/img"]["result"]) == len(answers["8000x6500 /clip/img"]["result"]) > 0
    assert set(answers["8000x6500 /ocr"]["result"]) == {"texts", "scores", "boxes"}
    assert isinstance(answers["8000x6500 /represent"]["result"], list)
    # the reference's side limit where it has one
    for route in ("/ocr", "/represent"):
        assert post_image(url, route, phone_photo) == {"result": [], "msg": "height or width out of range"}, route


def test_a_decompression_bomb_is_refused_from_its_header(large_service: Service) -> None:
    bomb = png_claiming(60000, 60000)
    print(f"\nbomb: a {len(bomb)}-byte PNG claiming 60000x60000 ({60000 * 60000 / 1e9:.1f} Gpx)")
    assert len(bomb) < 64
    for route in ("/clip/img", "/ocr", "/represent"):
        assert post_image(large_service.url, route, bomb) == {"result": [], "msg": "height or width out of range"}


def measure_concurrent_uploads(service: Service, url: str, photo: bytes) -> tuple[int, int, int, float]:
    """(PSS before, peak PSS, peak RSS sum) of the service's process tree while CONCURRENT uploads of `photo`
    are sent to `url`, and the seconds they took."""
    post_image(url, "/clip/img", photo)  # warm: first-use allocations are not the peak
    baseline = service.total_pss()
    peak = {"pss": baseline, "rss": service.total_rss()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak["pss"] = max(peak["pss"], service.total_pss())
            peak["rss"] = max(peak["rss"], service.total_rss())

    async def upload_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            files = {"file": ("photo.jpg", photo, "image/jpeg")}
            return await asyncio.gather(*(client.post(f"{url}/clip/img", headers=HEADERS, files=files)
                                          for _ in range(CONCURRENT)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    responses = asyncio.run(upload_all())
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    assert all(r.status_code == 200 and "msg" not in r.json() for r in responses), [r.text[:200] for r in responses]
    return baseline, peak["pss"], peak["rss"], elapsed


def test_concurrent_200mp_uploads_stay_within_a_bounded_memory(large_service: Service, phone_photo: bytes) -> None:
    """MAX_PIXELS_IN_FLIGHT (400 Mpx by default) lets two 200 MP decodes run at once; the other two wait. Through
    a second adapter with a budget of one such photo (on the same Triton), the peak grows by about one decode:
    the budget is what bounds it (without it, as many decode at once as Triton has decoding threads)."""
    decoded = PHONE_200MP[0] * PHONE_200MP[1] * 3
    # Pillow holds an RGB image in 4 bytes a pixel (RGBX): one 200 MP decode is 762 MiB, measured 768 MiB of peak
    # growth for decode_rgb alone (a quiet machine; under load fewer decodes overlap and the peak was lower)
    held = PHONE_200MP[0] * PHONE_200MP[1] * 4
    triton_url = large_service.triton_url()
    one_photo = Settings.from_env({"API_AUTH_KEY": KEY, "INFERENCE_TIMEOUT_S": str(int(TIMEOUT_S)),
                                   "MAX_PIXELS_IN_FLIGHT": "200000000"}, triton_url=triton_url)
    growth = {}
    with live_adapter(one_photo) as one_photo_url:
        for name, url, measured in (("default budget", large_service.url, "served tree"),
                                    ("budget of one photo", one_photo_url, "served tree, this adapter apart")):
            baseline, peak_pss, peak_rss, elapsed = measure_concurrent_uploads(large_service, url, phone_photo)
            growth[name] = peak_pss - baseline
            print(f"\n{CONCURRENT} concurrent {PHONE_200MP[0]}x{PHONE_200MP[1]} uploads "
                  f"({len(phone_photo) / MIB:.1f} MB each) on /clip/img, {name}, in {elapsed:.1f} s: PSS of the "
                  f"{measured} {baseline / MIB:.0f} MiB before, peak {peak_pss / MIB:.0f} MiB "
                  f"(+{growth[name] / MIB:.0f} MiB; one decoded RGB photo is {decoded / MIB:.0f} MiB), "
                  f"peak RSS sum {peak_rss / MIB:.0f} MiB")
    # at most two (one) decodes in flight, each the image Pillow holds and a little (a photo this large is resized
    # in one call: ~800 MiB of peak growth for one decode and resize, measured), plus the bodies; without the budget,
    # all four would decode at once. (When its resize was split in copied halves, one decode peaked at 2x and CI
    # saw +3111 MiB.)
    bodies = CONCURRENT * 4 * len(phone_photo) + 256 * MIB
    assert growth["default budget"] < 2 * 1.25 * held + bodies
    assert growth["budget of one photo"] < 1.25 * held + bodies
    assert growth["budget of one photo"] < growth["default budget"]


def test_ping_and_text_bodies_as_the_reference(large_service: Service) -> None:
    url = large_service.url
    ping = httpx.get(f"{url}/ping")
    assert (ping.status_code, ping.text) == (200, "pong") and ping.headers["content-type"].startswith("text/plain")
    for headers in ({"content-type": "text/plain"}, {}):
        response = httpx.post(f"{url}/clip/txt", headers={**HEADERS, **headers}, content=b'{"text":"red"}')
        assert response.status_code == 422, headers
        assert response.json()["detail"][0]["type"] == "model_attributes_type"
    assert len(httpx.post(f"{url}/clip/txt", headers=HEADERS, json={"text": "red"}).json()["result"]) > 0


def test_readiness_names_a_missing_python_model(service_repository: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model_repository"
    shutil.copytree(service_repository, broken, ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "ocr" / "1" / "model.py").unlink()
    service = Service(broken, tmp_path / "serve.log").start(ready_status=None)
    try:
        response = httpx.get(f"{service.url}/health/ready", timeout=10)
        ocr = post_image(service.url, "/ocr", photo_jpeg((640, 480)))
        clip = post_image(service.url, "/clip/img", photo_jpeg((640, 480)))
    finally:
        service.stop()
    body = response.json()
    print(f"\nreadiness without ocr/1/model.py: {response.status_code} failed={body.get('failed')} "
          f"families={body.get('families')}")
    assert response.status_code == 503
    assert body["failed"] == {"ocr": "ocr/1/model.py has not been exported"}
    assert "ocr/1/model.py" in body["families"]["ocr"]
    assert body["families"]["clip"] == body["families"]["faces"] == "ready"
    assert ocr == {"result": [], "msg": "model 'ocr' is not available: run `mt-photos-triton export ocr`"}
    assert "msg" not in clip
