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

# Accelerated variants of an onnxruntime model, chosen by `tritonserver --model-config-name=<name>` (the
# compose GPU / OpenVINO files set it); the native backend reads these, the embedded one ignores them.
VARIANTS_DIR = "configs"
TRT_CACHE_DIR = "/tmp/trt_cache"  # the repository is mounted read-only; engines are rebuilt after a restart

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


def accelerator_variants(config: ModelConfig) -> dict[str, ModelConfig]:
    if config.backend != "onnxruntime":
        return {}
    gpu = ModelConfig()
    gpu.CopyFrom(config)
    del gpu.instance_group[:]
    gpu.instance_group.add(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_GPU)
    tensorrt = gpu.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    tensorrt.parameters.update(
        {"precision_mode": "FP16", "trt_engine_cache_enable": "true", "trt_engine_cache_path": TRT_CACHE_DIR}
    )
    openvino = ModelConfig()
    openvino.CopyFrom(config)
    openvino.optimization.execution_accelerators.cpu_execution_accelerator.add(name="openvino")
    return {"gpu": gpu, "openvino": openvino}


def render_config(config: ModelConfig) -> str:
    """The text `write_config` writes."""
    return text_format.MessageToString(config)


def write_config(model_dir: Path, config: ModelConfig) -> None:
    """`config.pbtxt` as given, and for onnxruntime models the accelerator variants."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / CONFIG_NAME).write_text(render_config(config))
    variants = accelerator_variants(config)
    if variants:
        (model_dir / VARIANTS_DIR).mkdir(exist_ok=True)
    for name, variant in variants.items():
        (model_dir / VARIANTS_DIR / f"{name}.pbtxt").write_text(text_format.MessageToString(variant))
