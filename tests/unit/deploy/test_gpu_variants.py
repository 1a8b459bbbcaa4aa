"""The GPU variants export writes beside every onnxruntime model, read as the NGC server's onnxruntime backend
reads them: every dynamic input of a TensorRT model has an optimisation profile covering every shape its caller
sends (taken from the caller's own config and the pipelines' shape rules), engines and timing caches lie on the
volume compose mounts, and models whose callers send shapes no profile serves well run on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format

from export.configs import GPU_FP32_VARIANT, GPU_VARIANT, TRT_CACHE_DIR, accelerator_variants, write_config
from mt_photos_triton.pipelines.faces import ALIGNED_SIZE
from mt_photos_triton.pipelines.ocr_detection import detection_size
from mt_photos_triton.pipelines.ocr_parameters import OcrParameters
from mt_photos_triton.repository import ModelConfig, read_config
from mt_photos_triton.runtime.container import server_flags
from tests.harness import ROOT

REPOSITORY = ROOT / "model_repository"
TENSORRT_MODELS = ("clip_visual", "clip_textual", "face_det", "face_rec")
CUDA_MODELS = ("ocr_det", "ocr_rec")
EMBEDDING_MODELS = ("clip_visual", "clip_textual", "face_rec")


def _config(name: str) -> ModelConfig:
    return read_config(REPOSITORY / name)


def _parameters(name: str) -> dict[str, str]:
    return {key: value.string_value for key, value in _config(name).parameters.items()}


def _caller_shapes() -> dict[str, tuple[str, int, tuple[int, ...]]]:
    """Per TensorRT model: (input, largest batch its caller sends, the other dims it sends) by the callers' rules."""
    clip_size = int(_parameters("clip_image_preprocess")["size"])
    context = int(_parameters("clip_tokenize")["context_length"])
    faces = _parameters("faces")
    detector = int(faces["detector_input_size"])
    return {
        # the ensembles' dynamic batcher forms batches up to the encoder's own max_batch_size
        "clip_visual": ("image", _config("clip_visual").max_batch_size, (3, clip_size, clip_size)),
        "clip_textual": ("text", _config("clip_textual").max_batch_size, (context,)),
        # the faces BLS model chunks its calls by the batches its config names
        "face_det": ("image", int(faces["detector_max_batch"]), (3, detector, detector)),
        "face_rec": ("image", int(faces["recognizer_max_batch"]), (3, ALIGNED_SIZE, ALIGNED_SIZE)),
    }


def _accelerator(variant: ModelConfig) -> tuple[str, dict[str, str]]:
    (accelerator,) = variant.optimization.execution_accelerators.gpu_execution_accelerator
    return accelerator.name, dict(accelerator.parameters)


def _profile(text: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in text.split(","):
        name, dims = item.split(":")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


@pytest.mark.parametrize("variant_name", [GPU_VARIANT, GPU_FP32_VARIANT])
@pytest.mark.parametrize("name", TENSORRT_MODELS)
def test_tensorrt_profiles_cover_what_callers_send(name: str, variant_name: str) -> None:
    variant = accelerator_variants(_config(name))[variant_name]
    kind, parameters = _accelerator(variant)
    assert kind == "tensorrt"
    low = _profile(parameters["trt_profile_min_shapes"])
    opt = _profile(parameters["trt_profile_opt_shapes"])
    high = _profile(parameters["trt_profile_max_shapes"])
    # every input of the model (the batch axis is dynamic in each) has a profile
    assert set(low) == set(opt) == set(high) == {tensor.name for tensor in variant.input}
    tensor, largest_batch, dims = _caller_shapes()[name]
    for batch in range(1, largest_batch + 1):
        sent = (batch, *dims)
        assert all(lo <= s <= hi for lo, s, hi in zip(low[tensor], sent, high[tensor], strict=True)), (sent, high)
    assert all(lo <= o <= hi for lo, o, hi in zip(low[tensor], opt[tensor], high[tensor], strict=True))
    assert [g.kind for g in variant.instance_group] == [variant.instance_group[0].KIND_GPU]


@pytest.mark.parametrize("name", TENSORRT_MODELS)
def test_caches_lie_on_the_mounted_volume_one_directory_per_model_and_precision(name: str) -> None:
    variants = accelerator_variants(_config(name))
    for variant_name in (GPU_VARIANT, GPU_FP32_VARIANT):
        _, parameters = _accelerator(variants[variant_name])
        assert parameters["trt_engine_cache_enable"] == parameters["trt_timing_cache_enable"] == "1"
        # fp16 and fp32 engines of one model never share a directory
        precision = parameters["precision_mode"].lower()
        assert parameters["trt_engine_cache_path"] == f"{TRT_CACHE_DIR}/{name}/{precision}"
        assert parameters["trt_timing_cache_path"] == TRT_CACHE_DIR
    gpu_compose = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    mounts = gpu_compose["services"]["triton"]["volumes"]
    assert f"trt_cache:{TRT_CACHE_DIR}" in mounts and "trt_cache" in gpu_compose["volumes"]


@pytest.mark.parametrize("name", TENSORRT_MODELS)
def test_precision_fp32_for_embeddings_fp16_elsewhere_and_fp32_when_forced(name: str) -> None:
    variants = accelerator_variants(_config(name))
    expected = "FP32" if name in EMBEDDING_MODELS else "FP16"
    assert _accelerator(variants[GPU_VARIANT])[1]["precision_mode"] == expected
    assert _accelerator(variants[GPU_FP32_VARIANT])[1]["precision_mode"] == "FP32"


def test_ocr_shapes_vary_so_ocr_runs_on_cuda_by_choice() -> None:
    params = OcrParameters.from_config(_parameters("ocr"))
    photos = [(4032, 3024), (3024, 4032), (1920, 1080), (800, 600), (10000, 736)]  # 4:3, 3:4, 16:9, small, a strip
    sizes = {detection_size(w, h, params) for w, h in photos}
    assert len(sizes) == len(photos), "each kind of photo gives the detector a shape of its own"
    assert max(max(s) for s in sizes) > 4 * params.det_limit_side, "the long side is not bounded by the limit"
    for name in CUDA_MODELS:
        variant = accelerator_variants(_config(name))[GPU_VARIANT]
        assert any(d == -1 for tensor in variant.input for d in tensor.dims)
        assert _accelerator(variant) == ("cuda", {})
        assert variant.parameters["cudnn_conv_algo_search"].string_value == "1"


def test_write_config_writes_every_variant(tmp_path: Path) -> None:
    write_config(tmp_path / "face_rec", _config("face_rec"))
    names = sorted(p.name for p in (tmp_path / "face_rec" / "configs").iterdir())
    assert names == ["gpu-fp32.pbtxt", "gpu.pbtxt", "openvino.pbtxt"]
    parsed = text_format.Parse((tmp_path / "face_rec" / "configs" / "gpu.pbtxt").read_text(), ModelConfig())
    assert parsed == accelerator_variants(_config("face_rec"))[GPU_VARIANT]


@pytest.mark.parametrize(
    ("accelerator", "precision", "flag"),
    [("gpu", "auto", "gpu"), ("gpu", "fp32", "gpu-fp32"), ("openvino", "fp32", "openvino"), ("cpu", "fp32", None)],
)
def test_trt_precision_selects_the_fp32_variant(tmp_path: Path, accelerator: str, precision: str, flag: str | None) -> None:
    names = [f for f in server_flags(tmp_path, [], accelerator, precision) if f.startswith("--model-config-name")]
    assert names == ([f"--model-config-name={flag}"] if flag else [])
    with pytest.raises(ValueError, match="TRT_PRECISION"):
        server_flags(tmp_path, [], "gpu", "fp8")


def test_compose_passes_the_precision_switch_and_dockerfile_owns_the_cache_dir() -> None:
    triton = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["triton"]
    assert triton["environment"]["TRT_PRECISION"] == "${TRT_PRECISION:-auto}"
    lines = (ROOT / "Dockerfile.triton").read_text().splitlines()
    chown = next(i for i, line in enumerate(lines) if "chown triton-server" in line and TRT_CACHE_DIR in line)
    user = next(i for i, line in enumerate(lines) if line.startswith("USER triton-server"))
    assert chown < user, "the unprivileged server must be able to write the new volume"
