"""The committed model repository is servable as it stands: every config parses and agrees with its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mt_photos_triton.families import FAMILIES, SERVED_MODEL_PARAMETER
from mt_photos_triton.repository import (
    FAMILY_PARAMETER,
    dependencies,
    model_dirs,
    parameter,
    read_config,
)
from export.configs import ENTRY_INSTANCES
from tests.harness import MODEL_REPOSITORY

COMMITTED = model_dirs(MODEL_REPOSITORY)


def test_every_entry_model_of_every_family_is_committed() -> None:
    for family in FAMILIES.values():
        for model in family.entry_models:
            assert model in COMMITTED, f"{family.name}: {model} has no config in model_repository/"


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_config_agrees_with_its_folder(name: str) -> None:
    directory: Path = COMMITTED[name]
    config = read_config(directory)
    assert config.name == name
    assert parameter(config, FAMILY_PARAMETER) in FAMILIES, "every model names its export family"
    for dependency in dependencies(config):
        assert dependency in COMMITTED, f"{name} needs {dependency}, which is not committed"
    if config.backend == "python":
        assert (directory / "1" / "model.py").is_file()
    if config.HasField("dynamic_batching"):
        assert config.max_batch_size > 0
        policy = config.dynamic_batching.default_queue_policy
        if config.backend == "python":  # where requests come in: bounded, and two instances (export/configs.py)
            assert policy.max_queue_size > 0 and policy.default_timeout_microseconds > 0, "unbounded queue"
            assert all(group.count >= ENTRY_INSTANCES for group in config.instance_group)
        else:  # behind the python models; a policy here stalls Triton 2.51's batcher (export/configs.py)
            assert not config.dynamic_batching.HasField("default_queue_policy")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_entry_models_name_the_default_model_they_serve(family: str) -> None:
    """What the adapter reports and `serve` compares with the variables: the committed tree is the default's."""
    for model in FAMILIES[family].entry_models:
        served = parameter(read_config(COMMITTED[model]), SERVED_MODEL_PARAMETER)
        assert served == FAMILIES[family].default_model, model
