"""The whole service with every family exported (as tests/e2e/service builds it), one with only CLIP, and a
headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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
def clip_only_service(console_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The same repository with the face recogniser's and the text detector's weights removed, as before
    `export faces` and `export ocr` ran."""
    target = tmp_path_factory.mktemp("console-clip-only") / "model_repository"
    shutil.copytree(console_repository, target)
    (target / "face_rec" / "1" / "model.onnx").unlink()
    (target / "ocr_det" / "1" / "model.onnx").unlink()
    running = Service(target, target.parent / "serve.log").start()
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
