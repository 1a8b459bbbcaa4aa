"""Installing the committed python models into a repository: one rule for every family.

The committed tree (`repository.templates()`: the checkout's `model_repository/`, or the wheel's copy) holds
each python model's `model.py` and each ensemble's empty version folder. Export installs them into the target
repository when missing or different, so a repository of the user's choosing serves what the checkout does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from export.common import ExportError
from mt_photos_triton.repository import FAMILY_PARAMETER, VERSION, ModelConfig, model_dirs, parameter, read_config
from mt_photos_triton.repository import templates

PYTHON_MODEL_FILE = "model.py"


def family_models(family: str) -> dict[str, ModelConfig]:
    """The committed models of `family` (every one names its export family in its config)."""
    return {
        name: config
        for name, path in model_dirs(templates()).items()
        if parameter(config := read_config(path), FAMILY_PARAMETER) == family
    }


def python_model_sources(family: str) -> list[Path]:
    """The committed `model.py` of each python model of `family`."""
    return [
        templates() / name / VERSION / PYTHON_MODEL_FILE
        for name, config in family_models(family).items()
        if config.backend == "python"
    ]


def install_python_models(repository: Path, family: str) -> list[str]:
    """Every python model's `model.py` of `family` copied into `repository` when missing or different, and every
    ensemble's version folder made; the names of the models whose `model.py` was (re)installed."""
    installed = []
    models = family_models(family)
    if not models:
        raise ExportError(f"{templates()} holds no {family} models: reinstall mt-photos-triton")
    for name, config in models.items():
        version = Path(repository) / name / VERSION
        if config.platform == "ensemble":
            version.mkdir(parents=True, exist_ok=True)  # the wheel carries no .gitkeep
        if config.backend != "python":
            continue
        source, target = templates() / name / VERSION / PYTHON_MODEL_FILE, version / PYTHON_MODEL_FILE
        if not source.is_file():
            raise ExportError(f"{source} is missing: reinstall mt-photos-triton")
        if target.is_file() and target.read_bytes() == source.read_bytes():
            continue
        version.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        installed.append(name)
    return installed
