"""The model repository on disk: read and write `config.pbtxt`, and tell which models can load.

A model whose weights were never exported must not be asked for at start-up (it would fail and, with
default flags, stop the server), so `serve` loads only what is complete and reports the rest with the
export command that provides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ModelConfig = model_config_pb2.ModelConfig

CONFIG_NAME = "config.pbtxt"
VERSION = "1"
DEFAULT_ONNX_FILENAME = "model.onnx"
# A python model that calls other models through BLS names them in this parameter (comma-separated), so
# that readiness and loading account for them.
BLS_MODELS_PARAMETER = "bls_models"
# Which `mt-photos-triton export` family provides a model.
FAMILY_PARAMETER = "family"
# Files (comma-separated, relative to the version folder) that export writes for a python model, such as a
# tokenizer: until they exist the model is not loadable.
REQUIRED_FILES_PARAMETER = "required_files"


def read_config(model_dir: Path) -> ModelConfig:
    config = ModelConfig()
    text_format.Parse((model_dir / CONFIG_NAME).read_text(), config)
    return config


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


def parameter(config: ModelConfig, key: str, default: str | None = None) -> str | None:
    if key in config.parameters:
        return config.parameters[key].string_value
    return default


def set_parameters(config: ModelConfig, values: dict[str, object]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def model_dirs(repository: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sorted(Path(repository).glob(f"*/{CONFIG_NAME}"))}


def dependencies(config: ModelConfig) -> list[str]:
    """The models this one needs at inference time: ensemble steps and declared BLS callees."""
    steps = [step.model_name for step in config.ensemble_scheduling.step]
    bls = [n.strip() for n in (parameter(config, BLS_MODELS_PARAMETER) or "").split(",") if n.strip()]
    return steps + bls


@dataclass(frozen=True)
class ModelStatus:
    name: str
    family: str | None
    missing: str | None  # why it cannot load, or None

    @property
    def loadable(self) -> bool:
        return self.missing is None


def _own_files_missing(model_dir: Path, config: ModelConfig) -> str | None:
    version_dir = model_dir / VERSION
    if config.platform == "ensemble":
        return None
    if config.backend == "python":
        required = ["model.py", *(n.strip() for n in (parameter(config, REQUIRED_FILES_PARAMETER) or "").split(","))]
        missing = [version_dir / name for name in required if name and not (version_dir / name).is_file()]
        return f"{missing[0]} has not been exported" if missing else None
    if config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx":
        weights = version_dir / (config.default_model_filename or DEFAULT_ONNX_FILENAME)
        return None if weights.is_file() else f"{weights} has not been exported"
    return f"unsupported backend '{config.backend or config.platform}'"


def scan(repository: Path) -> dict[str, ModelStatus]:
    """Every model of the repository with the reason it cannot load, following dependencies."""
    dirs = model_dirs(repository)
    configs = {name: read_config(path) for name, path in dirs.items()}
    statuses: dict[str, ModelStatus] = {}

    def visit(name: str, trail: tuple[str, ...]) -> str | None:
        if name in statuses:
            return statuses[name].missing
        if name not in configs:
            return f"model '{name}' is not in the repository"
        if name in trail:
            return f"dependency cycle through '{name}'"
        config = configs[name]
        missing = _own_files_missing(dirs[name], config)
        for dependency in dependencies(config):
            if missing is None and (reason := visit(dependency, (*trail, name))) is not None:
                missing = f"needs '{dependency}': {reason}"
        statuses[name] = ModelStatus(name, parameter(config, FAMILY_PARAMETER), missing)
        return missing

    for name in configs:
        visit(name, ())
    return statuses


def loadable_models(repository: Path) -> list[str]:
    return [name for name, status in scan(repository).items() if status.loadable]
