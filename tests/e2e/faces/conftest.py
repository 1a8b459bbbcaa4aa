"""The faces models (det_2.5g, or the SCRFD-shaped stand-in where the licensed file is absent, + a stand-in
recogniser) exported into the session's Triton and loaded, and uploads whose face counts that detector gives.

The plumbing tests (shapes, padding, errors, settings, decoding) run on either detector; a test about real
faces asks for `real_faces` and is skipped, naming the licensed file, without it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from export import faces as faces_export
from tests.faces_support import (
    blank_image,
    build_pack,
    detector_path,
    face_detector,
    real_detector_present,
    standin_score,
    standin_spots_image,
    t1_bytes,
)
from tests.harness import TritonHarness

E2E_DETECTOR = "det_2.5g"  # the detector the reference service's recorded answers were made with
MIDDLING_SHADE = 236  # the stand-in scores an 8 px square of this grey ~0.72: between 0.65 and 0.8


@dataclass(frozen=True)
class Samples:
    """Uploads with a known face count for the detector the session serves (photos for det_2.5g)."""

    one: bytes  # one face, off the centre of a landscape image (EXIF rotation moves it)
    many: bytes
    many_count: int
    none: bytes
    middling: bytes  # one face scoring between FACE_MIN_SCORE 0.65 and 0.8


@pytest.fixture(scope="session")
def real_faces(fixtures: Path) -> Path:
    """The licensed detector: a test asking for it asserts about real faces (skipped, naming it, without)."""
    return detector_path(fixtures, E2E_DETECTOR)


@pytest.fixture(scope="session")
def faces_pack(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("face_pack")
    return build_pack(work / "pack", face_detector(fixtures, E2E_DETECTOR, work))


@pytest.fixture(scope="session")
def faces_models(triton: TritonHarness, faces_pack: Path) -> Path:
    faces_export.export(triton.repository, "e2e", str(faces_pack), force=True)
    triton.load(faces_export.DETECTOR_MODEL, faces_export.RECOGNIZER_MODEL, faces_export.ENTRY_MODEL)
    return triton.repository


@pytest.fixture(scope="session")
def samples(fixtures: Path) -> Samples:
    if real_detector_present(fixtures, E2E_DETECTOR):
        faces = fixtures / "images" / "faces"
        # biden.jpg's face scores ~0.747 with det_2.5g (recorded reference answer)
        return Samples(
            one=(faces / "obama.jpg").read_bytes(), many=t1_bytes(), many_count=6, none=blank_image(),
            middling=(faces / "biden.jpg").read_bytes(),
        )
    assert 0.65 < standin_score(MIDDLING_SHADE) < 0.8
    return Samples(
        one=standin_spots_image([(200, 136)], size=(640, 480)),
        many=standin_spots_image([(96, 96), (320, 320), (504, 160)]),
        many_count=3,
        none=blank_image(),
        middling=standin_spots_image([(320, 320)], shade=MIDDLING_SHADE),
    )
