"""Building and writing `config.pbtxt`: one builder for every family, the queue and instance policy each family
applies where it builds its configs, and the accelerator variants written beside onnxruntime configs.

`write_config` writes the config it is given and nothing else: what a reader of a family's export code sees is
what Triton serves (the variants aside, which the native server reads only when asked to by name)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mt_photos_triton.families import SERVED_MODEL_PARAMETER
from mt_photos_triton.repository import CONFIG_NAME, FAMILY_PARAMETER, ModelConfig

KIND_CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU
KIND_AUTO = model_config_pb2.ModelInstanceGroup.KIND_AUTO  # Triton's default: each GPU when there is one, else CPU

# Accelerated variants of an onnxruntime model (and the `ocr` model's GPU variant, which pads to the recogniser's
# profile), chosen by `tritonserver --model-config-name=<name>` (the compose GPU / OpenVINO files set it, and the
# embedded server for `gpu` where onnxruntime-gpu is installed); a model without that variant serves config.pbtxt.
VARIANTS_DIR = "configs"

# Backpressure at the door: a python model that a client's request reaches first (the OCR and faces BLS models,
# the first step of each CLIP ensemble) queues at most this many requests, each at most this long, and rejects
# the rest at once (the adapter answers "busy" instead of letting requests pile up without bound).
QUEUE_MAX_SIZE = 256
QUEUE_TIMEOUT_US = 30_000_000
# With a queue policy, Triton 2.51's dynamic batcher misses a request that arrives while the instance is still
# finishing the previous execute and picks it up ~500 ms later: measured at concurrency 1 on `ocr`, 2 of 8
# requests waited 0.5-0.7 s; with a second instance (or without the policy) none waited. So a bounded model
# gets at least two instances (cheap python processes), and the onnxruntime models behind them, which carry the
# heavy weights, no policy: their queues are fed only by the bounded models.
ENTRY_INSTANCES = 2
# Each instance of an onnxruntime model is a session of its own holding its own copy of the weights (a stub
# process each in the embedded server; a session each in the native backend too): a model gets a second instance
# only where a bench showed it pays for that copy (docs/memory.md).
# A model whose inputs vary a lot in size keeps in its onnxruntime arena the largest run it has seen unless the
# arena shrinks after each run: the native backend's run option, which the embedded one reads too. Set on
# face_rec only (a batch of 1 to 64 faces, shrinking for free there); the detectors and ocr_rec ran slower with
# it, and the CLIP encoders' inputs vary little (docs/memory.md).
ARENA_SHRINKAGE_PARAMETER = "memory.enable_memory_arena_shrinkage"
ARENA_SHRINKAGE_CPU = "cpu:0"


def new_config(name: str, family: str, max_batch_size: int, *, backend: str = "", platform: str = "") -> ModelConfig:
    """A config that names its export family (the repository scan and `serve` read it)."""
    config = ModelConfig(name=name, max_batch_size=max_batch_size, backend=backend, platform=platform)
    config.parameters[FAMILY_PARAMETER].string_value = family
    return config


def add_tensor(tensors: object, name: str, data_type: str, dims: Sequence[int]) -> None:
    """`tensors`: a config's `input` or `output`; `data_type` as Triton spells it (TYPE_FP32, ...)."""
    tensors.add(name=name, data_type=model_config_pb2.DataType.Value(data_type), dims=list(dims))  # type: ignore[attr-defined]


def instances(config: ModelConfig, count: int, kind: int = KIND_CPU) -> None:
    config.instance_group.add(count=count, kind=kind)


def add_step(config: ModelConfig, model: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> None:
    """One step of an ensemble: the step model's tensor names mapped to the ensemble's."""
    step = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    step.input_map.update(inputs)
    step.output_map.update(outputs)


def set_parameters(config: ModelConfig, values: Mapping[str, object]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def serves(config: ModelConfig, model: str) -> None:
    """An entry model names the model it serves (the adapter reports it; `serve` compares it with the variables)."""
    config.parameters[SERVED_MODEL_PARAMETER].string_value = model


def shrink_arena(config: ModelConfig) -> None:
    """The model's CPU arena gives back, after each run, what that run no longer holds (see above)."""
    config.parameters[ARENA_SHRINKAGE_PARAMETER].string_value = ARENA_SHRINKAGE_CPU


def bound_queue(config: ModelConfig) -> None:
    """A dynamically batched entry model's queue: bounded, each request timing out, the rest rejected at once.
    Give the model ENTRY_INSTANCES instances or more with it (see above)."""
    policy = config.dynamic_batching.default_queue_policy
    policy.timeout_action = model_config_pb2.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = QUEUE_TIMEOUT_US
    policy.allow_timeout_override = True
    policy.max_queue_size = QUEUE_MAX_SIZE


def serving_cores() -> int:
    """The cores of the machine export runs on: export runs where the models are served (`make serve`, the
    container's first start), so a family that sizes thread pools by cores takes these, and says so."""
    return os.cpu_count() or 1


# TensorRT caches live on a volume that compose mounts (docker-compose.gpu.yml: `trt_cache`), so engines are
# built once, on the first load after an export, not at every start; each model and precision has its own
# directory, so an fp16 and an fp32 engine of one model never take each other's place.
TRT_CACHE_DIR = "/trt_cache"
GPU_VARIANT = "gpu"
NICE_PARAMETER = "nice"  # the embedded onnxruntime backend's CPU priority of a model's process
GPU_FP32_VARIANT = "gpu-fp32"  # TRT_PRECISION=fp32 selects it: every TensorRT model in fp32
# Outputs users keep and compare across a switch of machine (stored vectors, and the recogniser's per-step
# confidences, which decide the texts kept at text_score_threshold) are computed in fp32: nothing measured here
# says FP16 keeps CLIP's or ArcFace's vectors within the docs' tolerances, or OCR's texts (docs/gpu.md).
FP32_OUTPUTS = frozenset({"embedding", "confidences"})
TRT_WORKSPACE_BYTES = 2 << 30


def profile_shapes(config: ModelConfig) -> dict[str, str] | None:
    """TensorRT's optimisation profile (trt_profile_min/opt/max_shapes, "name:1x3x112x112,...") of a model
    whose inputs are fixed but for the batch axis: batch 1 up to max_batch_size, optimised for the full batch
    the dynamic batcher forms under load. None where another axis is dynamic (its callers send shapes that one
    profile would not serve well: see gpu_variant)."""
    if any(d < 0 for tensor in config.input for d in tensor.dims):
        return None
    batch = max(config.max_batch_size, 1)
    lead = [1, batch, batch] if config.max_batch_size > 0 else [None, None, None]
    shapes = {}
    for key, first in zip(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"), lead):
        shapes[key] = ",".join(
            f"{t.name}:" + "x".join(str(d) for d in ([first] if first else []) + list(t.dims)) for t in config.input
        )
    return shapes


def gpu_variant(
    config: ModelConfig,
    *,
    force_fp32: bool = False,
    cache_dir: str = TRT_CACHE_DIR,
    profile: Mapping[str, str] | None = None,
) -> ModelConfig:
    """The config for an NVIDIA GPU: one GPU instance; TensorRT with one optimisation profile covering every
    shape its callers send (so no engine is built after the first load), FP16 unless it makes vectors users
    keep (FP32_OUTPUTS) or fp32 is forced. The profile is `profile` where the family gives one (its callers pad
    to buckets the profile spans: ocr_rec, export/ocr_gpu.py), else the batch profile of a model fixed but for
    the batch; with neither, the CUDA provider by choice (ocr_det: height x width follow each photo up to
    10000 px, and padding them to buckets changes what it reads: docs/gpu.md)."""
    gpu = ModelConfig()
    gpu.CopyFrom(config)
    if NICE_PARAMETER in gpu.parameters:  # a CPU scheduling choice (clip_visual's): a GPU's feeder keeps its priority
        del gpu.parameters[NICE_PARAMETER]
    del gpu.instance_group[:]
    gpu.instance_group.add(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_GPU)
    accelerators = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    profile = profile or profile_shapes(config)
    if profile is None:
        accelerators.add(name="cuda")
        # cuDNN's exhaustive algorithm search runs again for every new input shape; heuristics do not (backend
        # parameter kept by the onnxruntime backend's README, "1" = HEURISTIC)
        gpu.parameters["cudnn_conv_algo_search"].string_value = "1"
        return gpu
    fp32 = force_fp32 or any(output.name in FP32_OUTPUTS for output in config.output)
    cache = f"{cache_dir}/{config.name}/{'fp32' if fp32 else 'fp16'}"  # cache_dir: `bench gpu` uses its own
    tensorrt = accelerators.add(name="tensorrt")
    tensorrt.parameters.update(
        {
            "precision_mode": "FP32" if fp32 else "FP16",
            "max_workspace_size_bytes": str(TRT_WORKSPACE_BYTES),
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": cache_dir,
            **profile,
        }
    )
    return gpu


def accelerator_variants(config: ModelConfig, profile: Mapping[str, str] | None = None) -> dict[str, ModelConfig]:
    """The variants of an onnxruntime model (`profile`: its family's TensorRT profile, see gpu_variant)."""
    if config.backend != "onnxruntime":
        return {}
    openvino = ModelConfig()
    openvino.CopyFrom(config)
    openvino.optimization.execution_accelerators.cpu_execution_accelerator.add(name="openvino")
    return {
        GPU_VARIANT: gpu_variant(config, profile=profile),
        GPU_FP32_VARIANT: gpu_variant(config, force_fp32=True, profile=profile),
        "openvino": openvino,
    }


def render_config(config: ModelConfig) -> str:
    """The text `write_config` writes."""
    return text_format.MessageToString(config)


def write_config(
    model_dir: Path,
    config: ModelConfig,
    *,
    profile: Mapping[str, str] | None = None,
    variants: Mapping[str, ModelConfig] | None = None,
) -> None:
    """`config.pbtxt` as given, and its variants: for onnxruntime models the accelerator variants (with the
    family's TensorRT `profile`, if any), and the `variants` a family builds itself (the `ocr` model's GPU one)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / CONFIG_NAME).write_text(render_config(config))
    variants = {**accelerator_variants(config, profile), **(variants or {})}
    if variants:
        (model_dir / VARIANTS_DIR).mkdir(exist_ok=True)
    for name, variant in variants.items():
        (model_dir / VARIANTS_DIR / f"{name}.pbtxt").write_text(text_format.MessageToString(variant))
