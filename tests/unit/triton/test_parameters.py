"""A python model's config parameters: read as export wrote them, and a missing one names the export command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mt_photos_triton.triton.parameters import ConfigError, MissingParameter, ModelConfig


def args(parameters: dict[str, str], tmp_path: Path, name: str = "ocr") -> dict[str, str]:
    config = {
        "name": name,
        "max_batch_size": 8,
        "parameters": {key: {"string_value": value} for key, value in parameters.items()},
    }
    return {"model_config": json.dumps(config), "model_repository": str(tmp_path / name), "model_version": "1"}


def test_values_as_export_wrote_them(tmp_path: Path) -> None:
    config = ModelConfig.from_args(args({
        "family": "ocr", "bls_models": "ocr_det, ocr_rec", "detector_rows_per_call": "4",
        "canonicalize": "false", "dictionary": "keys.txt", "intra_op_thread_count": "",
    }, tmp_path))
    assert config.name == "ocr" and config.config["max_batch_size"] == 8
    assert config.names("bls_models") == ["ocr_det", "ocr_rec"]
    assert config.integer("detector_rows_per_call") == 4
    assert config.flag("canonicalize") is False
    assert config.file("dictionary") == tmp_path / "ocr" / "1" / "keys.txt"
    assert config.optional("intra_op_thread_count") is None and config.optional("absent") is None
    assert config.parameters["family"] == "ocr"


@pytest.mark.parametrize(
    ("family", "command"),
    [("ocr", "mt-photos-triton export ocr"), ("faces", "mt-photos-triton export faces"),
     ("clip", "mt-photos-triton export clip")],
)
def test_a_missing_parameter_names_the_export_command_of_the_family(
    tmp_path: Path, family: str, command: str
) -> None:
    config = ModelConfig.from_args(args({"family": family}, tmp_path, name="m"))
    with pytest.raises(MissingParameter, match=f"m: config parameter 'size' is missing; `{command}` writes it"):
        config.integer("size")


def test_without_a_family_the_export_command_is_still_named(tmp_path: Path) -> None:
    config = ModelConfig.from_args({
        "model_config": json.dumps({"name": "m"}), "model_repository": str(tmp_path), "model_version": "1",
    })
    assert config.parameters == {}
    with pytest.raises(MissingParameter, match=r"`mt-photos-triton export <family>`"):
        config.text("size")


def test_values_of_the_wrong_kind_are_refused(tmp_path: Path) -> None:
    config = ModelConfig.from_args(args({"size": "224px", "canonicalize": "yes"}, tmp_path))
    with pytest.raises(ConfigError, match="'size' is '224px', not an integer"):
        config.integer("size")
    with pytest.raises(ConfigError, match="not true or false"):
        config.flag("canonicalize")
