"""The embedded `onnxruntime` backend's memory parameters inside the real tritonserver (docs/memory.md): a model
with `memory.enable_memory_arena_shrinkage` gives back after a large batch what a model without it keeps, both
answer alike, and one with the arena off answers alike too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.configs import shrink_arena, write_config
from mt_photos_triton.procfs import pss_bytes
from tests.e2e.test_onnxruntime_backend import (
    BATCHED_OUTPUTS, _stubs_of, image_batch, infer, make_batchable, scrfd_config, scrfd_files,
)
from tests.harness import TritonHarness

pytestmark = pytest.mark.e2e

LARGE_BATCH = 8
MIB = 2**20
VARIANTS = ("keeps", "shrinks", "no_arena")


@pytest.fixture(scope="module")
def variants(triton: TritonHarness, fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    source, _ = scrfd_files(fixtures, tmp_path_factory.mktemp("scrfd-memory"))
    files = {}
    for variant in VARIANTS:
        name = f"scrfd_{variant}"
        files[variant] = triton.repository / name / "1" / "model.onnx"
        make_batchable(source, files[variant])
        config = scrfd_config(name, batched=True, threads=1)
        if variant == "shrinks":
            shrink_arena(config)
        if variant == "no_arena":
            config.parameters["enable_mem_arena"].string_value = "0"
            config.parameters["enable_mem_pattern"].string_value = "0"
        write_config(triton.repository / name, config)
    names = [f"scrfd_{variant}" for variant in VARIANTS]
    triton.load(*names)
    yield files
    triton.unload(*names)


def stub_pss(model_file: Path) -> int:
    (stub,) = _stubs_of(model_file)
    return pss_bytes(stub) or 0


def test_a_shrinking_arena_gives_back_a_large_batch(triton: TritonHarness, variants: dict[str, Path]) -> None:
    small, large = image_batch(1), np.concatenate([image_batch(seed) for seed in range(LARGE_BATCH)])
    growth, answers = {}, {}
    for variant in VARIANTS:
        model = f"scrfd_{variant}"
        answers[variant] = infer(triton.client(), model, small, BATCHED_OUTPUTS)
        before = stub_pss(variants[variant])
        infer(triton.client(), model, large, BATCHED_OUTPUTS)
        growth[variant] = stub_pss(variants[variant]) - before
    print(f"\nstub PSS growth after a batch of {LARGE_BATCH}: "
          + ", ".join(f"{variant} {value / MIB:.0f} MiB" for variant, value in growth.items()))
    for variant in ("shrinks", "no_arena"):
        for ours, theirs in zip(answers[variant], answers["keeps"]):
            assert np.array_equal(ours, theirs), variant
    # the kept arena holds the batch's activations (tens of MiB at 640x640); the shrinking one gives them back
    assert growth["keeps"] > 20 * MIB
    assert growth["shrinks"] < growth["keeps"] / 2
