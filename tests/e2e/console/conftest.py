"""The whole service with every family exported (as tests/e2e/service builds it), one with only CLIP, and a
headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.console.cdp import Browser, Page, find_browser
from tests.e2e.service.support import Service, build_repository


@pytest.fixture(scope="session")
def browser_executable() -> str:
    executable = find_browser()
    if executable is None:
        pytest.skip("no chromium found (apt-get install -y chromium): the console's browser tests need one")
    return executable


@pytest.fixture(scope="session")
def console_repository(tmp_path_factory: pytest.TempPathFactory, fixtures: Path, browser_executable: str) -> Path:
    work = tmp_path_factory.mktemp("console-sources")
    return build_repository(tmp_path_factory.mktemp("console") / "model_repository", fixtures, work)


@pytest.fixture(scope="module")
def service(console_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("console-serve") / "serve.log"
    running = Service(console_repository, log, env={"INFERENCE_TIMEOUT_S": "30"}).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def clip_only_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A repository into which only `export clip` ran, as before a user exported faces and OCR."""
    from export import clip as clip_export
    from mt_photos_triton.reference.clip_standins import StandInSpec, write_immich_layout

    work = tmp_path_factory.mktemp("console-clip-only")
    target = work / "model_repository"
    clip_dir = write_immich_layout(work / "clip", StandInSpec(image_size=32, patch_size=8, embed_dim=16))
    clip_export.export(repository=target, model=None, source=str(clip_dir), force=False)
    running = Service(target, work / "serve.log").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def browser(browser_executable: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    work = tmp_path_factory.mktemp("chromium")
    running = Browser(browser_executable, work / "profile", work / "chromium.log")
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    tab = browser.page()
    try:
        yield tab
    finally:
        tab.close()


@dataclass(frozen=True)
class Uploads:
    """What the try-it panel is given: a face photo and a text photo, and what reading the latter must give."""

    face: Path
    text: Path
    must_read: str
    min_lines: int


@pytest.fixture(scope="session")
def uploads(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Uploads:
    """The fixtures' photos (a portrait, RapidOCR's ch_en_num.jpg) where the checkout has them; from a plain
    clone, an image the stand-in detector sees one face in and a page the tests render."""
    from mt_photos_triton.reference.ocr_images import ENGLISH_LINES, encode, text_page
    from tests.e2e.service.support import DETECTOR
    from tests.faces_support import real_detector_present, standin_face_image

    photos = fixtures / "images"
    if real_detector_present(fixtures, DETECTOR) and (photos / "ocr" / "ch_en_num.jpg").is_file():
        return Uploads(photos / "faces" / "obama.jpg", photos / "ocr" / "ch_en_num.jpg", "正品促销", 10)
    work = tmp_path_factory.mktemp("console-uploads")
    (work / "face.png").write_bytes(standin_face_image())
    (work / "text.jpg").write_bytes(encode(text_page(ENGLISH_LINES, 28, 640)))
    return Uploads(work / "face.png", work / "text.jpg", ENGLISH_LINES[0], len(ENGLISH_LINES))
