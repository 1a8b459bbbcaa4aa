"""The reference's model variables choose what `export` exports and what every entry config says it serves;
`serve` warns when the repository serves another model than they name."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from export import record
from mt_photos_triton.cli import build_parser, run_export
from mt_photos_triton.families import FAMILIES, SERVED_MODEL_PARAMETER
from mt_photos_triton.reference.clip_standins import StandInSpec, write_immich_layout
from mt_photos_triton.repository import parameter, read_config
from tests.harness import MODEL_REPOSITORY

# an immich model with 512-d embeddings and a single text input, as the stand-in below
OPENAI_B32 = "ViT-B-32__openai"
STAND_IN_512 = StandInSpec(embed_dim=512)
MODEL_VARIABLES = [v for family in FAMILIES.values() for v in family.variables]


@pytest.fixture(autouse=True)
def no_model_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in MODEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def export(*args: str) -> int:
    return run_export(build_parser().parse_args(["export", *args]))


def served(repository: Path, model: str) -> str | None:
    return parameter(read_config(repository / model), SERVED_MODEL_PARAMETER)


class FakeHub:
    """huggingface_hub's HfApi and snapshot_download, serving a local directory; records the repositories asked for."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.asked: list[str] = []

    def model_info(self, repo_id: str, revision: str) -> object:
        return type("Info", (), {"sha": "0" * 40})()

    def snapshot_download(self, repo_id: str, revision: str, allow_patterns: list[str], local_dir: Path, endpoint: str) -> str:
        self.asked.append(repo_id)
        shutil.copytree(self.layout, local_dir, dirs_exist_ok=True)
        return str(local_dir)


@pytest.fixture(scope="module")
def layout_512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_immich_layout(tmp_path_factory.mktemp("clip") / "stand-in", STAND_IN_512)


def test_clip_visual_variable_chooses_the_downloaded_model(
    layout_512: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    hub = FakeHub(layout_512)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda endpoint: hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setenv("MT_PHOTOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIP_VISUAL_MODEL_NAME", OPENAI_B32)
    repository = tmp_path / "repository"
    assert export("clip", "--repository", str(repository)) == 0
    assert hub.asked == [f"immich-app/{OPENAI_B32}"]
    assert served(repository, "clip_image") == served(repository, "clip_text") == OPENAI_B32
    assert parameter(read_config(repository / "clip_visual"), "model_name") == OPENAI_B32
    saved = record.read(repository, "clip")
    assert saved is not None and saved.model == OPENAI_B32


def test_a_local_copy_is_taken_as_the_model_the_variables_name(
    layout_512: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIP_TEXTUAL_MODEL_NAME", OPENAI_B32)
    repository = tmp_path / "repository"
    assert export("clip", "--from", str(layout_512), "--repository", str(repository)) == 0
    assert served(repository, "clip_image") == served(repository, "clip_text") == OPENAI_B32
    # `--model` still names it
    assert export("clip", "--model", "ViT-B-16__openai", "--from", str(layout_512), "--repository", str(repository)) == 0
    assert served(repository, "clip_image") == "ViT-B-16__openai"


def test_differing_clip_names_are_refused_before_anything_is_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CLIP_VISUAL_MODEL_NAME", "XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k")
    monkeypatch.setenv("CLIP_TEXTUAL_MODEL_NAME", "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k")
    repository = tmp_path / "repository"
    with caplog.at_level(logging.ERROR):
        assert export("clip", "--repository", str(repository)) == 2
        assert export("auto", "--repository", str(repository)) == 2
    assert "CLIP_VISUAL_MODEL_NAME=XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k" in caplog.text
    assert "set them alike" in caplog.text
    assert not repository.exists()


def test_faces_recognition_variable_names_the_pack_of_a_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtures: Path
) -> None:
    from tests.faces_support import build_pack, detector_path

    pack = build_pack(tmp_path / "pack", detector_path(fixtures, "det_500m"))
    monkeypatch.setenv("FACE_RECOGNITION_MODEL_NAME", "antelopev2")
    repository = tmp_path / "repository"
    assert export("faces", "--from", str(pack), "--repository", str(repository)) == 0
    assert served(repository, "faces") == "antelopev2"
    saved = record.read(repository, "faces")
    assert saved is not None and saved.model == "antelopev2" and saved.requested_source == str(pack)


def test_an_ocr_model_the_exporter_does_not_know_fails_the_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OCR_MODEL_NAME", "PP-OCRv9_tiny")
    with caplog.at_level(logging.ERROR):
        assert export("ocr", "--repository", str(tmp_path)) == 1
    assert "unknown OCR model 'PP-OCRv9_tiny'" in caplog.text


def test_auto_takes_the_variables_only(tmp_path: Path) -> None:
    assert export("auto", "--model", "buffalo_l", "--repository", str(tmp_path)) == 2
    assert export("auto", "--from", str(tmp_path), "--repository", str(tmp_path)) == 2


def test_serve_warns_per_family_where_the_repository_serves_another_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mt_photos_triton.serve import report_served_models

    for family in FAMILIES.values():
        for model in family.entry_models:
            shutil.copytree(MODEL_REPOSITORY / model, tmp_path / model, ignore=shutil.ignore_patterns("1"))
    with caplog.at_level(logging.WARNING):
        report_served_models(tmp_path, {})
    assert caplog.records == []  # the committed tree serves the defaults
    with caplog.at_level(logging.WARNING):
        report_served_models(tmp_path, {"CLIP_VISUAL_MODEL_NAME": OPENAI_B32, "FACE_DETECTION_MODEL_NAME": "antelopev2"})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    clip = next(m for m in messages if m.startswith("clip:"))
    assert FAMILIES["clip"].default_model in clip and OPENAI_B32 in clip and "mt-photos-triton export clip" in clip
    assert any(m.startswith("faces:") and "antelopev2" in m for m in messages)
