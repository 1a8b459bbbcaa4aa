"""A python model's config as Triton hands it to `initialize`: its name, its directory and its `parameters`.

Export writes every parameter a model reads (the model's contract, STYLE.md "One contract per model"), so
there is no default here: a missing one is an error that names the export command of the model's family.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mt_photos_triton.families import FAMILIES

FAMILY_PARAMETER = "family"  # every config export writes names its family (clip, faces, ocr)
_ANY_EXPORT = "mt-photos-triton export"


class ConfigError(ValueError):
    """The model's config cannot be served as it is; the message says what to do."""


class MissingParameter(ConfigError):
    """A parameter the model reads is not in its config."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    config: Mapping[str, Any]  # the whole model config (inputs, outputs, max_batch_size, ...)
    parameters: Mapping[str, str]  # `parameters`, each one's string_value
    version_dir: Path  # <repository>/<model>/<version>: where the model's own files lie

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ModelConfig:
        """From the `args` of TritonPythonModel.initialize."""
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        return cls(config["name"], config, parameters, Path(args["model_repository"]) / args["model_version"])

    @property
    def export_command(self) -> str:
        family = FAMILIES.get(self.parameters.get(FAMILY_PARAMETER, ""))
        return family.export_command if family else f"{_ANY_EXPORT} <family>"

    def text(self, key: str) -> str:
        if key not in self.parameters:
            raise MissingParameter(
                f"{self.name}: config parameter '{key}' is missing; `{self.export_command}` writes it"
            )
        return self.parameters[key]

    def optional(self, key: str) -> str | None:
        """A parameter a model may go without (the onnxruntime backend's thread counts); empty counts as unset."""
        return self.parameters.get(key) or None

    def integer(self, key: str) -> int:
        value = self.text(key)
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{self.name}: config parameter '{key}' is {value!r}, not an integer") from None

    def flag(self, key: str) -> bool:
        value = self.text(key)
        if value not in ("true", "false"):
            raise ConfigError(f"{self.name}: config parameter '{key}' is {value!r}, not true or false")
        return value == "true"

    def names(self, key: str) -> list[str]:
        """A comma-separated list ("ocr_det,ocr_rec")."""
        return [name.strip() for name in self.text(key).split(",") if name.strip()]

    def file(self, key: str) -> Path:
        """A file of the model's version directory, named by a parameter (a tokenizer, a dictionary)."""
        return self.version_dir / self.text(key)
