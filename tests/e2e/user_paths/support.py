"""A user's own paths: `mt-photos-triton export` each family into a directory of their choosing, then
`mt-photos-triton serve` it, both as the console script run from a directory outside the checkout."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mt_photos_triton.runtime.ports import free_port
from tests.e2e.service.support import text_photo

KEY = "user-path-key"
EXPORT_TIMEOUT_S = 900
START_TIMEOUT_S = 300.0
# the stand-in detector (tests/faces_support.py) sees one face in a bright 16 px square on black
STANDIN_FACE = (312, 312, 328, 328)


@dataclass(frozen=True)
class Sources:
    """What the user has at hand: a CLIP model in immich's layout and a face pack (both local folders)."""

    clip: Path
    faces: Path
    real_detector: bool  # the fixtures' SCRFD (real faces) or the stand-in (plumbing only)


def user_env(home: Path) -> dict[str, str]:
    """The caller's environment with caches in `home` and no Hugging Face access (every source is local)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_REPOSITORY", "PYTHONPATH")}
    return {**env, "MT_PHOTOS_CACHE": str(home / "cache"), "XDG_CACHE_HOME": str(home / "cache"),
            "HF_HUB_OFFLINE": "1", "API_AUTH_KEY": KEY, "PYTHONUNBUFFERED": "1"}


def export_all(cli: Path, repository: Path, sources: Sources, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """The three families, each by its own command, as a user runs them; their output by family."""
    commands = {
        "ocr": ["export", "ocr"],
        "faces": ["export", "faces", "--from", str(sources.faces)],
        "clip": ["export", "clip", "--from", str(sources.clip)],
    }
    printed = {}
    for family, arguments in commands.items():
        done = subprocess.run([str(cli), *arguments, "--repository", str(repository)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
        printed[family] = done.stdout + done.stderr
        assert done.returncode == 0, f"export {family} failed ({done.returncode}):\n{printed[family][-4000:]}"
    return printed


@contextmanager
def served(
    cli: Path, repository: Path, cwd: Path, env: dict[str, str], log: Path, command: str = "serve"
) -> Iterator[str]:
    """`mt-photos-triton serve --repository DIR` (or `start`) on a free loopback port until ready; its URL."""
    port = free_port()
    command_line = [str(cli), command, "--repository", str(repository), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command_line, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve not ready in {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def face_upload(sources: Sources, fixtures: Path) -> bytes:
    if sources.real_detector:
        return (fixtures / "images" / "faces" / "obama.jpg").read_bytes()
    image = Image.new("RGB", (640, 640), "black")
    image.paste((255, 255, 255), STANDIN_FACE)
    return png(image)


def post(url: str, route: str, **kwargs: object) -> object:
    """The `result` of a 200 answer; an error body (the reference's `msg`) fails with its message."""
    response = httpx.post(f"{url}{route}", headers={"api-key": KEY}, timeout=120, **kwargs)
    assert response.status_code == 200, (route, response.status_code, response.text[:500])
    body = json.loads(response.content)
    assert not body.get("msg"), f"{route} answered an error: {body}"
    return body["result"]


def unit_vector(result: object) -> list[float]:
    assert isinstance(result, list) and result, result
    values = [float(v) for v in result]
    assert abs(sum(v * v for v in values) - 1.0) < 1e-3, "CLIP embeddings are unit vectors"
    return values


def check_clip(url: str) -> None:
    red, blue = Image.new("RGB", (96, 96), (220, 20, 20)), Image.new("RGB", (96, 96), (20, 20, 220))
    images = [unit_vector(post(url, "/clip/img", files={"file": (f"{n}.png", png(i), "image/png")}))
              for n, i in (("red", red), ("blue", blue))]
    text = unit_vector(post(url, "/clip/txt", json={"text": "红色的花 a red flower"}))
    assert len(text) == len(images[0]), "image and text embeddings share one space"
    assert images[0] != images[1], "different images get different embeddings"


def check_ocr(url: str) -> None:
    ocr = post(url, "/ocr", files={"file": ("text.jpg", text_photo(), "image/jpeg")})
    read = "".join(ocr["texts"]).replace(" ", "").upper()
    assert "MTPHOTOS2026" in read and len(ocr["boxes"]) == len(ocr["texts"]) == len(ocr["scores"]), ocr


def check_faces(url: str, sources: Sources, fixtures: Path) -> None:
    faces = post(url, "/represent", files={"file": ("face.png", face_upload(sources, fixtures), "image/png")})
    assert len(faces) == 1, faces
    face = faces[0]
    assert len(face["embedding"]) == 512 and face["face_confidence"] > 0.65
    assert set(face["facial_area"]) >= {"x", "y", "w", "h"}


def assert_every_route_answers(url: str, sources: Sources, fixtures: Path) -> None:
    """Each route of the MT Photos API gives a real result (not an error body) over HTTP; all are tried, and
    what failed is reported together."""
    checks = {
        "/check": lambda: post(url, "/check") == "pass" or pytest.fail("/check did not pass"),
        "/clip/img, /clip/txt": lambda: check_clip(url),
        "/ocr": lambda: check_ocr(url),
        "/represent": lambda: check_faces(url, sources, fixtures),
    }
    failures = {}
    for routes, check in checks.items():
        try:
            check()
        except (AssertionError, pytest.fail.Exception, KeyError, TypeError) as error:
            failures[routes] = str(error)[:600]
    assert not failures, f"routes without real results: {json.dumps(failures, ensure_ascii=False, indent=1)}"
