"""The faces models (det_2.5g + a stand-in recogniser) exported into the session's Triton and loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from export import faces as faces_export
from tests.faces_support import build_pack, detector_path
from tests.harness import TritonHarness

E2E_DETECTOR = "det_2.5g"  # the detector the reference service's recorded answers were made with


@pytest.fixture(scope="session")
def faces_pack(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pack(tmp_path_factory.mktemp("face_pack"), detector_path(fixtures, E2E_DETECTOR))


@pytest.fixture(scope="session")
def faces_models(triton: TritonHarness, faces_pack: Path) -> Path:
    faces_export.export(triton.repository, "e2e", str(faces_pack), force=True)
    triton.load(faces_export.DETECTOR_MODEL, faces_export.RECOGNIZER_MODEL, faces_export.ENTRY_MODEL)
    return triton.repository
