"""The model repository on disk, read only: `config.pbtxt`, which models can load, where the templates are.

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


def templates() -> Path:
    """The committed model-repository tree (configs and python models): the checkout's `model_repository/`,
    or the copy the wheel carries as package data."""
    checkout = Path(__file__).resolve().parents[1] / "model_repository"
    if (checkout / "README.md").is_file() and (checkout / "ocr" / CONFIG_NAME).is_file():
        return checkout
    return Path(__file__).resolve().parent / "templates"


def read_config(model_dir: Path) -> ModelConfig:
    config = ModelConfig()
    text_format.Parse((model_dir / CONFIG_NAME).read_text(), config)
    return config


def parameter(config: ModelConfig, key: str, default: str | None = None) -> str | None:
    if key in config.parameters:
        return config.parameters[key].string_value
    return default


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
