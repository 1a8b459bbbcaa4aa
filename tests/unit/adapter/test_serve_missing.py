"""What serve tells readiness: the families exported in part and what they lack, from the repository scan."""

from __future__ import annotations

import shutil
from pathlib import Path

from mt_photos_triton.repository import templates
from mt_photos_triton.serve import report_repository


def test_a_family_exported_in_part_is_named_with_the_missing_file(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    shutil.copytree(templates(), repository, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("ocr_det", "ocr_rec"):
        (repository / name / "1" / "model.onnx").write_bytes(b"weights")
    (repository / "ocr" / "1" / "model.py").unlink()

    loadable, missing = report_repository(repository)

    assert missing == {"ocr": "ocr/1/model.py has not been exported"}, "faces and clip were never exported"
    assert "ocr" not in loadable and {"ocr_det", "ocr_rec"} <= set(loadable)


def test_nothing_missing_when_families_are_whole_or_absent(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    shutil.copytree(templates(), repository, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("ocr_det", "ocr_rec"):
        (repository / name / "1" / "model.onnx").write_bytes(b"weights")
    loadable, missing = report_repository(repository)
    assert missing == {} and "ocr" in loadable
