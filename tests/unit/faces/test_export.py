"""`export faces`: sources (a fake Hugging Face hub, directories, zips), hashes, contracts, idempotence.

The packs take the licensed SCRFD files where present, else the SCRFD-shaped stand-ins these tests build; only
buffalo_s's pinned sha256 needs the real det_500m."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export import faces as faces_export
from export.common import ExportError
from mt_photos_triton.repository import read_config
from tests.faces_support import (
    build_pack,
    build_standin_batched_detector,
    detector_path,
    face_detector,
    real_detector_present,
)


class FakeHub:
    """Stands in for huggingface_hub.snapshot_download: serves one local pack folder and records the calls."""

    def __init__(self, pack: Path) -> None:
        self.pack = pack
        self.calls: list[dict] = []

    def snapshot_download(
        self, repo_id: str, revision: str, allow_patterns: list[str], local_dir: Path, endpoint: str
    ) -> str:
        self.calls.append({"repo_id": repo_id, "revision": revision, "endpoint": endpoint, "patterns": allow_patterns})
        for pattern in allow_patterns:
            target = Path(local_dir) / pattern
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.pack / pattern, target)
        return str(local_dir)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fixtures: Path) -> FakeHub:
    import huggingface_hub

    fake = FakeHub(build_pack(tmp_path / "served", face_detector(fixtures, "det_500m", tmp_path)))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return fake


def test_hub_download_honours_the_mirror_and_the_pinned_hash(hub: FakeHub, tmp_path: Path, fixtures: Path) -> None:
    detector_path(fixtures, "det_500m")  # the hub must serve the very file buffalo_s pins
    repository = tmp_path / "repository"
    result = faces_export.export(repository, "buffalo_s", None, force=False)
    assert result.written == ["face_det", "face_rec", "faces"]
    assert hub.calls == [
        {
            "repo_id": "immich-app/buffalo_s",
            "revision": faces_export.PACKS["buffalo_s"].revision,
            "endpoint": "https://hf-mirror.example",
            "patterns": ["detection/model.onnx", "recognition/model.onnx"],
        }
    ]
    # a detector that is not the pinned file is refused
    shutil.copy(detector_path(fixtures, "det_2.5g"), hub.pack / "detection" / "model.onnx")
    with pytest.raises(ExportError, match="sha256"):
        faces_export.export(repository, "buffalo_s", None, force=True)


def test_unpinned_pack_records_hashes_and_refuses_a_changed_file(hub: FakeHub, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    result = faces_export.export(repository, "buffalo_m", None, force=False)
    assert any("recorded" in note for note in result.notes)
    record = json.loads((repository / "faces" / "export.json").read_text())
    assert record["source_sha256"]["detection/model.onnx"] == faces_export.sha256_file(
        hub.pack / "detection" / "model.onnx"
    )
    assert faces_export.export(repository, "buffalo_m", None, force=False).skipped  # idempotent
    record["exporter"] = "an older exporter"  # configs written by another version are not taken as current
    (repository / "faces" / "export.json").write_text(json.dumps(record))
    assert not faces_export.export(repository, "buffalo_m", None, force=False).skipped
    # another SCRFD-shaped file (neither det_500m nor the plain stand-in): its sha256 is not the recorded one
    changed = build_standin_batched_detector(tmp_path / "changed" / "detector.onnx")
    shutil.copy(changed, hub.pack / "detection" / "model.onnx")
    (repository / "face_det" / "1" / "model.onnx").unlink()
    with pytest.raises(ExportError, match="recorded at the first export"):
        faces_export.export(repository, "buffalo_m", None, force=False)


def test_unknown_pack_needs_a_local_source(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown face pack"):
        faces_export.export(tmp_path, "buffalo_xl", None, force=False)


def test_missing_file_in_the_source_is_named(tmp_path: Path) -> None:
    (tmp_path / "pack" / "detection").mkdir(parents=True)
    with pytest.raises(ExportError, match="detection/model.onnx is missing"):
        faces_export.export(tmp_path / "repository", "mine", str(tmp_path / "pack"), force=False)


def test_zip_source_with_a_graph_normalising_static_batch_recognizer(tmp_path: Path, fixtures: Path) -> None:
    batched = "scrfd_500m_bnkps_batched"
    real = real_detector_present(fixtures, batched)
    detector = detector_path(fixtures, batched) if real else build_standin_batched_detector(tmp_path / "det.onnx")
    pack = build_pack(
        tmp_path / "buffalo_x",
        detector,
        normalises_input=True,
        static_batch=True,
    )
    archive = tmp_path / "buffalo_x.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in pack.rglob("*.onnx"):
            out.write(path, Path("buffalo_x") / path.relative_to(pack))
    repository = tmp_path / "repository"
    result = faces_export.export(repository, "buffalo_x", str(archive), force=False)
    # the self-check compared faces: t1.jpg's 6 with the real detector, at least one with the stand-in
    found = re.search(r"self-check vs insightface: (\d+) faces", result.notes[-1])
    assert found is not None, result.notes[-1]
    compared = int(found[1])
    assert (compared == 6) if real else (compared >= 1)

    entry = {k: v.string_value for k, v in read_config(repository / "faces").parameters.items()}
    assert (entry["recognizer_mean"], entry["recognizer_std"]) == ("0.0", "1.0")  # as insightface decides
    assert entry["bls_models"] == "face_det,face_rec" and entry["family"] == "faces"
    rec = read_config(repository / "face_rec")
    assert rec.max_batch_size > 1 and rec.HasField("dynamic_batching")
    assert [o.name for o in read_config(repository / "face_det").output][:3] == ["score_8", "score_16", "score_32"]

    session = ort.InferenceSession(
        str(repository / "face_rec" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].name == "image" and session.get_outputs()[0].name == "embedding"
    crops = np.random.default_rng(0).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    together = session.run(None, {"image": crops})[0]
    original = ort.InferenceSession(str(pack / "recognition" / "model.onnx"), providers=["CPUExecutionProvider"])
    single = np.concatenate([original.run(None, {"input.1": crops[i : i + 1]})[0] for i in range(3)])
    assert together.shape == (3, 512)
    assert np.allclose(together, single, atol=1e-4)


def test_committed_configs_are_what_export_writes_for_buffalo_l() -> None:
    from mt_photos_triton.repository import CONFIG_NAME
    from export.configs import render_config
    from tests.harness import MODEL_REPOSITORY

    for name, config in faces_export.default_configs().items():
        committed = (MODEL_REPOSITORY / name / CONFIG_NAME).read_text()
        assert committed == render_config(config), name


def test_a_failed_self_check_leaves_nothing_to_serve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fixtures: Path
) -> None:
    pack = build_pack(tmp_path / "pack", face_detector(fixtures, "det_500m", tmp_path))

    def finds_nothing(detection: Path, recognition: Path, images: list, min_score: float) -> list:
        empty = np.zeros((0, 4), np.float32)
        return [faces_export.ReferenceFaces(empty, empty[:, 0], empty, empty, empty) for _ in images]

    monkeypatch.setattr(faces_export, "reference_represent", finds_nothing)
    repository = tmp_path / "repository"
    with pytest.raises(ExportError, match="self-check"):
        faces_export.export(repository, "broken", str(pack), force=False)
    assert not (repository / "face_det" / "1" / "model.onnx").exists()
    assert not (repository / "faces" / "export.json").exists()
