"""The GPU variants export writes beside every onnxruntime model, read as the NGC server's onnxruntime backend
reads them: every dynamic input of a TensorRT model has an optimisation profile covering every shape its caller
sends (taken from the caller's own config and the pipelines' shape rules), engines and timing caches lie on the
volume compose mounts, and models whose callers send shapes no profile serves well run on CUDA. The OCR configs
are read as `export ocr` writes them (the recogniser's profile and the `ocr` GPU variant's buckets are its own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format

from export import ocr_configs
from export.configs import (
    GPU_FP32_VARIANT, GPU_VARIANT, TRT_CACHE_DIR, VARIANTS_DIR, accelerator_variants, write_config,
)
from mt_photos_triton.families import FAMILIES
from mt_photos_triton.pipelines.faces import ALIGNED_SIZE
from mt_photos_triton.pipelines.ocr_detection import detection_size
from mt_photos_triton.pipelines.ocr_parameters import OcrParameters, WidthBuckets
from mt_photos_triton.pipelines.ocr_recognition import recognition_batches
from mt_photos_triton.repository import ModelConfig, read_config
from mt_photos_triton.runtime.container import server_flags
from tests.harness import ROOT

REPOSITORY = ROOT / "model_repository"
TENSORRT_MODELS = ("clip_visual", "clip_textual", "face_det", "face_rec", "ocr_rec")
CUDA_MODELS = ("ocr_det",)
FP32_MODELS = ("clip_visual", "clip_textual", "face_rec", "ocr_rec")  # embeddings; the recogniser's confidences
OCR_MODELS = (ocr_configs.DET_MODEL, ocr_configs.REC_MODEL, ocr_configs.ENTRY_MODEL)


def _config(name: str) -> ModelConfig:
    return read_config(REPOSITORY / name)


@pytest.fixture(scope="module")
def ocr_written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OCR configs and variants as `export ocr` writes them for the default model."""
    repository = tmp_path_factory.mktemp("ocr_configs")
    ocr_configs.write_configs(repository, FAMILIES["ocr"].default_model)
    return repository


@pytest.fixture(scope="module")
def variants(ocr_written: Path):
    """`variants(name)`: the model's variants by name, as export writes them."""

    def of(name: str) -> dict[str, ModelConfig]:
        if name not in OCR_MODELS:
            return accelerator_variants(_config(name))
        folder = ocr_written / name / VARIANTS_DIR
        return {p.stem: text_format.Parse(p.read_text(), ModelConfig()) for p in folder.glob("*.pbtxt")}

    return of


def _parameters(name: str) -> dict[str, str]:
    return {key: value.string_value for key, value in _config(name).parameters.items()}


def _caller_shapes(ocr_gpu: dict[str, str]) -> dict[str, tuple[str, list[tuple[int, ...]]]]:
    """Per TensorRT model: (input, every shape its caller sends) by the callers' rules; `ocr_gpu`: the `ocr`
    model's GPU variant's parameters (its buckets and rows per call)."""
    clip_size = int(_parameters("clip_image_preprocess")["size"])
    context = int(_parameters("clip_tokenize")["context_length"])
    faces = _parameters("faces")
    detector = int(faces["detector_input_size"])
    batches = {
        # the ensembles' dynamic batcher forms batches up to the encoder's own max_batch_size
        "clip_visual": ("image", _config("clip_visual").max_batch_size, (3, clip_size, clip_size)),
        "clip_textual": ("text", _config("clip_textual").max_batch_size, (context,)),
        # the faces BLS model chunks its calls by the batches its config names
        "face_det": ("image", int(faces["detector_max_batch"]), (3, detector, detector)),
        "face_rec": ("image", int(faces["recognizer_max_batch"]), (3, ALIGNED_SIZE, ALIGNED_SIZE)),
    }
    shapes = {name: (tensor, [(b, *dims) for b in range(1, top + 1)]) for name, (tensor, top, dims) in batches.items()}
    # the `ocr` model packs recogniser batches of equal width into calls of recognizer_rows_per_call rows; the
    # widths are the pipeline's own (recognition_batches), padded to the buckets; crops of every aspect ratio up
    # to the widest bucket's (wider lines go beyond the profile: docs/gpu.md)
    params = OcrParameters.from_config(ocr_gpu)
    buckets = WidthBuckets.from_config(ocr_gpu)
    assert buckets is not None
    rows = int(ocr_gpu["recognizer_rows_per_call"])
    crops = [np.zeros((params.rec_height, w, 3), dtype=np.uint8) for w in range(1, buckets.widths[-1] + 1, 7)]
    widths = {batch.pixels.shape[-1] for crop in crops for batch in recognition_batches([crop], params, buckets)}
    assert widths == set(buckets.widths), "every bucket is sent, and nothing else"
    shapes["ocr_rec"] = ("image", [(b, 3, params.rec_height, w) for w in sorted(widths) for b in range(1, rows + 1)])
    return shapes


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
def test_tensorrt_profiles_cover_what_callers_send(name: str, variant_name: str, variants, ocr_written: Path) -> None:
    variant = variants(name)[variant_name]
    kind, parameters = _accelerator(variant)
    assert kind == "tensorrt"
    low = _profile(parameters["trt_profile_min_shapes"])
    opt = _profile(parameters["trt_profile_opt_shapes"])
    high = _profile(parameters["trt_profile_max_shapes"])
    # every input of the model (the batch axis is dynamic in each) has a profile
    assert set(low) == set(opt) == set(high) == {tensor.name for tensor in variant.input}
    # what the caller sends under this variant (`ocr` is served its GPU variant of the same name)
    entry = variants(ocr_configs.ENTRY_MODEL)[variant_name]
    tensor, sent_shapes = _caller_shapes({k: v.string_value for k, v in entry.parameters.items()})[name]
    for sent in sent_shapes:
        assert all(lo <= s <= hi for lo, s, hi in zip(low[tensor], sent, high[tensor], strict=True)), (sent, high)
    assert all(lo <= o <= hi for lo, o, hi in zip(low[tensor], opt[tensor], high[tensor], strict=True))
    assert [g.kind for g in variant.instance_group] == [variant.instance_group[0].KIND_GPU]


def test_the_ocr_gpu_variant_is_the_cpu_config_with_buckets_and_larger_calls(ocr_written: Path) -> None:
    cpu = read_config(ocr_written / ocr_configs.ENTRY_MODEL)
    assert WidthBuckets.from_config({k: v.string_value for k, v in cpu.parameters.items()}) is None
    for name in (GPU_VARIANT, GPU_FP32_VARIANT):
        gpu = text_format.Parse((ocr_written / "ocr" / VARIANTS_DIR / f"{name}.pbtxt").read_text(), ModelConfig())
        for key in ("rec_width_buckets", "recognizer_rows_per_call"):
            del gpu.parameters[key]
        del cpu.parameters["recognizer_rows_per_call"]
        assert gpu == cpu
        cpu = read_config(ocr_written / ocr_configs.ENTRY_MODEL)


@pytest.mark.parametrize("name", TENSORRT_MODELS)
def test_caches_lie_on_the_mounted_volume_one_directory_per_model_and_precision(name: str, variants) -> None:
    for variant_name in (GPU_VARIANT, GPU_FP32_VARIANT):
        _, parameters = _accelerator(variants(name)[variant_name])
        assert parameters["trt_engine_cache_enable"] == parameters["trt_timing_cache_enable"] == "1"
        # fp16 and fp32 engines of one model never share a directory
        precision = parameters["precision_mode"].lower()
        assert parameters["trt_engine_cache_path"] == f"{TRT_CACHE_DIR}/{name}/{precision}"
        assert parameters["trt_timing_cache_path"] == TRT_CACHE_DIR
    gpu_compose = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    mounts = gpu_compose["services"]["triton"]["volumes"]
    assert f"trt_cache:{TRT_CACHE_DIR}" in mounts and "trt_cache" in gpu_compose["volumes"]


@pytest.mark.parametrize("name", TENSORRT_MODELS)
def test_precision_fp32_for_what_users_keep_fp16_elsewhere_and_fp32_when_forced(name: str, variants) -> None:
    expected = "FP32" if name in FP32_MODELS else "FP16"
    assert _accelerator(variants(name)[GPU_VARIANT])[1]["precision_mode"] == expected
    assert _accelerator(variants(name)[GPU_FP32_VARIANT])[1]["precision_mode"] == "FP32"


def test_detector_shapes_vary_so_the_detector_runs_on_cuda_by_choice(variants) -> None:
    params = OcrParameters.from_config(_parameters("ocr"))
    photos = [(4032, 3024), (3024, 4032), (1920, 1080), (800, 600), (10000, 736)]  # 4:3, 3:4, 16:9, small, a strip
    sizes = {detection_size(w, h, params) for w, h in photos}
    assert len(sizes) == len(photos), "each kind of photo gives the detector a shape of its own"
    assert max(max(s) for s in sizes) > 4 * params.det_limit_side, "the long side is not bounded by the limit"
    for name in CUDA_MODELS:
        variant = variants(name)[GPU_VARIANT]
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
