"""The sources a user brings (built here: no licensed file is needed), shared by the user-path tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mt_photos_triton.reference.arcface_standin import build_tiny
from mt_photos_triton.reference.clip_standins import StandInSpec, write_immich_layout
from tests.e2e.user_paths.support import Sources
from tests.faces_support import face_detector

# small enough for CI, with immich's interfaces (config.json, visual/ and textual/ folders)
CLIP_SPEC = StandInSpec()
FIXTURE_DETECTOR = "det_2.5g"


@pytest.fixture(scope="session")
def user_sources(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Sources:
    work = tmp_path_factory.mktemp("user-sources")
    clip = write_immich_layout(work / "clip-model", CLIP_SPEC)
    detector = face_detector(fixtures, FIXTURE_DETECTOR, work)
    pack = work / "face-pack"
    (pack / "detection").mkdir(parents=True)
    (pack / "detection" / "model.onnx").write_bytes(detector.read_bytes())
    build_tiny(pack / "recognition" / "model.onnx")
    return Sources(clip=clip, faces=pack, real_detector=detector.is_relative_to(fixtures))
