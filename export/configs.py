"""Writing `config.pbtxt`: the accelerator variants beside it and the bounded queue of the entry models."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mt_photos_triton.repository import CONFIG_NAME, ModelConfig


# Accelerated variants of an onnxruntime model, chosen by `tritonserver --model-config-name=<name>` (the
# compose GPU / OpenVINO files set it); the native backend reads these, the embedded one ignores them.
VARIANTS_DIR = "configs"
TRT_CACHE_DIR = "/tmp/trt_cache"  # the repository is mounted read-only; engines are rebuilt after a restart


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


# Backpressure at the door: a python model (what a client's request reaches first: the OCR and faces BLS models,
# the first step of each CLIP ensemble) queues at most this many requests, each at most this long, and rejects
# the rest at once (the adapter answers "busy" instead of letting requests pile up without bound).
QUEUE_MAX_SIZE = 256
QUEUE_TIMEOUT_US = 30_000_000
# With a queue policy, Triton 2.51's dynamic batcher misses a request that arrives while the instance is still
# finishing the previous execute and picks it up ~500 ms later: measured at concurrency 1 on `ocr`, 2 of 8
# requests waited 0.5-0.7 s; with a second instance (or without the policy) none waited. So the bounded models
# get two instances (cheap python processes), and the onnxruntime models behind them, which carry the heavy
# weights, no policy: their queues are fed only by the bounded models.
ENTRY_INSTANCES = 2


def bound_queue(config: ModelConfig) -> None:
    """A dynamically batched python model: a bounded rejecting queue with a timeout (unless it has a policy
    already) and at least ENTRY_INSTANCES instances. Other models are left as they are."""
    if config.backend != "python" or not config.HasField("dynamic_batching"):
        return
    if not config.dynamic_batching.HasField("default_queue_policy"):
        policy = config.dynamic_batching.default_queue_policy
        policy.timeout_action = model_config_pb2.ModelQueuePolicy.REJECT
        policy.default_timeout_microseconds = QUEUE_TIMEOUT_US
        policy.allow_timeout_override = True
        policy.max_queue_size = QUEUE_MAX_SIZE
    if not config.instance_group:
        config.instance_group.add(count=ENTRY_INSTANCES, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    for group in config.instance_group:
        group.count = max(group.count, ENTRY_INSTANCES)


def render_config(config: ModelConfig) -> str:
    """The text `write_config` writes for `config` (which it completes with a bounded queue)."""
    bound_queue(config)
    return text_format.MessageToString(config)


def write_config(model_dir: Path, config: ModelConfig) -> None:
    """`config.pbtxt` (with a bounded queue), and for onnxruntime models the accelerator variants."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / CONFIG_NAME).write_text(render_config(config))
    variants = accelerator_variants(config)
    if variants:
        (model_dir / VARIANTS_DIR).mkdir(exist_ok=True)
    for name, variant in variants.items():
        (model_dir / VARIANTS_DIR / f"{name}.pbtxt").write_text(text_format.MessageToString(variant))


def set_parameters(config: ModelConfig, values: dict[str, object]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)
