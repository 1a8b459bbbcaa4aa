"""Which models can load, and the header check done before decoding."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from mt_photos_triton.errors import IMAGE_TOO_LARGE, INVALID_IMAGE, PipelineError
from mt_photos_triton.pipelines.images import (
    CLIP_LIMITS, FACES_LIMITS, MAX_PIXELS, MAX_SIDE, OCR_LIMITS, Limits, check_size, probe,
)
from mt_photos_triton.repository import ModelConfig, loadable_models, scan
from export.configs import set_parameters, write_config


def _model(repo: Path, name: str, **fields: object) -> ModelConfig:
    config = ModelConfig(name=name, **fields)
    return config


def _python_model(repo: Path, name: str, bls: str = "") -> None:
    config = ModelConfig(name=name, backend="python", max_batch_size=8)
    set_parameters(config, {"family": "ocr", **({"bls_models": bls} if bls else {})})
    write_config(repo / name, config)
    (repo / name / "1").mkdir()
    (repo / name / "1" / "model.py").write_text("")


def test_scan_follows_bls_and_ensemble_dependencies(tmp_path: Path) -> None:
    write_config(tmp_path / "det", ModelConfig(name="det", backend="onnxruntime", max_batch_size=8))
    write_config(tmp_path / "rec", ModelConfig(name="rec", backend="onnxruntime", max_batch_size=8))
    (tmp_path / "rec" / "1").mkdir()
    (tmp_path / "rec" / "1" / "model.onnx").write_bytes(b"onnx")
    _python_model(tmp_path, "ocr", bls="det, rec")
    ensemble = ModelConfig(name="pipe", platform="ensemble", max_batch_size=8)
    ensemble.ensemble_scheduling.step.add(model_name="rec", model_version=-1)
    write_config(tmp_path / "pipe", ensemble)

    statuses = scan(tmp_path)
    assert statuses["det"].missing and "has not been exported" in statuses["det"].missing
    assert statuses["ocr"].missing and statuses["ocr"].missing.startswith("needs 'det'")
    assert statuses["ocr"].family == "ocr"
    assert sorted(loadable_models(tmp_path)) == ["pipe", "rec"]


def test_scan_reports_unknown_dependencies(tmp_path: Path) -> None:
    _python_model(tmp_path, "faces", bls="face_det")
    assert "not in the repository" in (scan(tmp_path)["faces"].missing or "")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def test_probe_reads_size_from_the_header() -> None:
    info = probe(_png(40, 30))
    assert (info.format, info.width, info.height) == ("PNG", 40, 30)


@pytest.mark.parametrize(
    ("data", "limits", "code"),
    [
        (b"", CLIP_LIMITS, INVALID_IMAGE),
        (b"not an image at all", CLIP_LIMITS, INVALID_IMAGE),
        (_png(MAX_SIDE + 1, 10), OCR_LIMITS, IMAGE_TOO_LARGE),  # the reference's side limit, on /ocr and /represent
        (_png(MAX_SIDE + 1, 10), FACES_LIMITS, IMAGE_TOO_LARGE),
        (_png(8000, 8000), Limits(max_pixels=60_000_000), IMAGE_TOO_LARGE),  # under the side limit, over the budget
        (_png(40, 30), Limits(refused_formats=frozenset({"PNG"})), INVALID_IMAGE),
    ],
)
def test_probe_refuses_before_decoding(data: bytes, limits: Limits, code: str) -> None:
    with pytest.raises(PipelineError) as caught:
        probe(data, limits)
    assert caught.value.code == code


def test_probe_admits_what_the_reference_answers() -> None:
    # /clip/img has no side limit (the reference has none there); 200 MP photos fit the pixel budget
    assert probe(_png(MAX_SIDE + 1, 10)).width == MAX_SIDE + 1
    assert probe(_png(8000, 6500), OCR_LIMITS).height == 6500
    assert 16320 * 12240 <= MAX_PIXELS
    check_size(16320, 12240, CLIP_LIMITS)


def test_write_config_writes_what_it_is_given(tmp_path: Path) -> None:
    """No policy is added on the way to disk: a family's export code shows what Triton serves."""
    from mt_photos_triton.repository import read_config

    config = ModelConfig(name="m", backend="python", max_batch_size=8)
    config.dynamic_batching.max_queue_delay_microseconds = 1000
    write_config(tmp_path / "m", config)
    written = read_config(tmp_path / "m")
    assert written == config
    assert not written.dynamic_batching.HasField("default_queue_policy") and not written.instance_group


def test_bound_queue_rejects_beyond_a_bounded_queue(tmp_path: Path) -> None:
    from mt_photos_triton.repository import read_config
    from export.configs import QUEUE_MAX_SIZE, bound_queue

    config = ModelConfig(name="m", backend="python", max_batch_size=8)
    config.dynamic_batching.max_queue_delay_microseconds = 1000
    bound_queue(config)
    write_config(tmp_path / "m", config)
    policy = read_config(tmp_path / "m").dynamic_batching.default_queue_policy
    assert policy.max_queue_size == QUEUE_MAX_SIZE
    assert policy.default_timeout_microseconds > 0 and policy.allow_timeout_override
    assert policy.timeout_action == policy.REJECT
    assert read_config(tmp_path / "m").dynamic_batching.max_queue_delay_microseconds == 1000
