"""Which onnxruntime providers the embedded server's onnxruntime backend opens for the variants export writes,
and what the embedded server does with ACCELERATOR=gpu where onnxruntime has no CUDA provider."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from google.protobuf import json_format

from export.configs import GPU_VARIANT, accelerator_variants
from mt_photos_triton.bench import gpu as bench_gpu
from mt_photos_triton.repository import read_config
from mt_photos_triton.runtime import embedded
from mt_photos_triton.runtime.embedded import EmbeddedTriton
from mt_photos_triton.runtime.providers import CPU, CUDA, TENSORRT, session_providers
from tests.harness import ROOT

ALL = [TENSORRT, CUDA, CPU]
PORTS = {"http": 1, "grpc": 2, "metrics": 3}  # command() only writes them


def _as_triton_json(name: str, variant: str = GPU_VARIANT) -> dict:
    """The config as Triton hands it to a python backend (JSON, proto field names)."""
    config = accelerator_variants(read_config(ROOT / "model_repository" / name))[variant]
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def test_tensorrt_variant_opens_tensorrt_with_its_profile_then_cuda_then_cpu() -> None:
    config = _as_triton_json("face_det")
    providers = session_providers(config, "GPU", 1, ALL)
    assert [name for name, _ in providers] == [TENSORRT, CUDA, CPU]
    options = providers[0][1]
    assert options["device_id"] == "1" and providers[1][1] == {"device_id": "1"}
    assert options["trt_fp16_enable"] == "True" and "precision_mode" not in options
    assert options["trt_max_workspace_size"] == str(2 << 30)
    assert options["trt_profile_max_shapes"] == "image:8x3x640x640"
    assert options["trt_engine_cache_path"] == "/trt_cache/face_det/fp16"


def test_fp32_embedding_model_does_not_enable_fp16() -> None:
    options = session_providers(_as_triton_json("face_rec"), "GPU", 0, ALL)[0][1]
    assert "trt_fp16_enable" not in options and options["trt_profile_max_shapes"] == "image:64x3x112x112"


def test_cuda_variant_and_fallbacks() -> None:
    assert session_providers(_as_triton_json("ocr_rec"), "GPU", 0, ALL) == [
        (CUDA, {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC"}),
        (CPU, {}),
    ]
    # TensorRT asked for but not installed: CUDA; no CUDA provider at all, or a CPU instance: CPU
    assert [n for n, _ in session_providers(_as_triton_json("clip_visual"), "GPU", 0, [CUDA, CPU])] == [CUDA, CPU]
    assert session_providers(_as_triton_json("clip_visual"), "GPU", 0, [CPU]) == [(CPU, {})]
    assert session_providers(_as_triton_json("clip_visual"), "CPU", 0, ALL) == [(CPU, {})]


def test_without_cuda_the_gpu_variant_is_ignored_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embedded, "onnxruntime_providers", lambda: [CPU])
    server = EmbeddedTriton(repository=ROOT / "model_repository", models=[], accelerator="gpu", precision="fp32", ports=PORTS)
    with caplog.at_level(logging.WARNING, logger=embedded.__name__):
        first = server.command(Path("/backends"))
        second = server.command(Path("/backends"))  # a restart by the watchdog
    assert not any(flag.startswith("--model-config-name") for flag in first + second)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no CUDA provider" in lines[0] and "onnxruntime-gpu" in lines[0]


def test_with_cuda_the_gpu_variant_is_served(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(embedded, "onnxruntime_providers", lambda: [TENSORRT, CUDA, CPU])
    server = EmbeddedTriton(repository=ROOT / "model_repository", models=[], accelerator="gpu", precision="fp32", ports=PORTS)
    with caplog.at_level(logging.WARNING, logger=embedded.__name__):
        flags = server.command(Path("/backends"))
    assert "--model-config-name=gpu-fp32" in flags and not caplog.records


def test_this_machines_onnxruntime_is_read() -> None:
    import onnxruntime

    assert embedded.onnxruntime_providers() == onnxruntime.get_available_providers()


def test_bench_gpu_dry_run_without_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if CUDA in embedded.onnxruntime_providers():
        pytest.skip("onnxruntime-gpu is installed here: the bench would run for real")
    from mt_photos_triton.cli import build_parser

    args = build_parser().parse_args(["bench", "gpu", "--workdir", str(tmp_path / "work")])
    assert args.family == "gpu"
    assert bench_gpu.main(args.args) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing measured" in out and CUDA in out
    from export.ocr_gpu import REC_WIDTH_BUCKETS

    assert ", ".join(map(str, REC_WIDTH_BUCKETS.widths)) in out, "the dry run says what OCR sends on a GPU"
    assert not (tmp_path / "work").exists(), "a dry run exports nothing"


def test_an_unknown_accelerator_is_refused_with_a_reason() -> None:
    server = EmbeddedTriton(repository=ROOT / "model_repository", models=[], accelerator="tpu", ports=PORTS)
    with pytest.raises(embedded.EmbeddedTritonError, match="ACCELERATOR='tpu'"):
        server.command(Path("/backends"))


def test_bench_writes_variants_with_caches_in_its_work_directory(tmp_path: Path) -> None:
    import shutil

    for name in ("face_rec", "faces"):
        shutil.copytree(ROOT / "model_repository" / name, tmp_path / "repo" / name, ignore=shutil.ignore_patterns("1"))
    assert bench_gpu.write_gpu_variants(tmp_path / "repo", tmp_path / "cache") == ["face_rec"]
    assert not (tmp_path / "repo" / "faces" / "configs").exists()
    text = (tmp_path / "repo" / "face_rec" / "configs" / "gpu.pbtxt").read_text()
    assert f"{tmp_path}/cache/face_rec/fp32" in text and "/trt_cache" not in text
