"""The embedded `onnxruntime` backend's memory parameters inside the real tritonserver (docs/memory.md): a model
with `memory.enable_memory_arena_shrinkage` gives back after a large batch what a model without it keeps, both
answer alike, and one with the arena off answers alike too.

The model is built here (two 3x3 convolutions through 16 channels): its activations are large and the same on
every checkout, whatever detector files the fixtures hold (a small model's growth is only the stub's
shared-memory region, alike for every variant)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.http as triton_http
from onnx import TensorProto, helper, numpy_helper

from export.configs import add_tensor, instances, new_config, set_parameters, shrink_arena, write_config
from mt_photos_triton.procfs import pss_bytes
from tests.e2e.test_onnxruntime_backend import _stubs_of
from tests.harness import TritonHarness

pytestmark = pytest.mark.e2e

LARGE_BATCH = 8
SIDE = 320
CHANNELS = 16  # the hidden activation of a batch of 8: 8 x 16 x 320 x 320 float32 = 50 MiB
MIB = 2**20
VARIANTS = ("keeps", "shrinks", "no_arena")


def wide_convolutions() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    first = numpy_helper.from_array(rng.normal(0, 0.2, (CHANNELS, 3, 3, 3)).astype(np.float32), "w1")
    second = numpy_helper.from_array(rng.normal(0, 0.2, (3, CHANNELS, 3, 3)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["hidden"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["hidden"], ["active"]),
            helper.make_node("Conv", ["active", "w2"], ["y"], pads=[1, 1, 1, 1]),
        ],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [first, second],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def variants(triton: TritonHarness) -> dict[str, Path]:
    files = {}
    for variant in VARIANTS:
        name = f"wide_{variant}"
        files[variant] = triton.repository / name / "1" / "model.onnx"
        files[variant].parent.mkdir(parents=True, exist_ok=True)
        onnx.save(wide_convolutions(), str(files[variant]))
        config = new_config(name, "tests", LARGE_BATCH, backend="onnxruntime")
        add_tensor(config.input, "x", "TYPE_FP32", [3, -1, -1])
        add_tensor(config.output, "y", "TYPE_FP32", [3, -1, -1])
        config.dynamic_batching.SetInParent()
        instances(config, 1)
        set_parameters(config, {"intra_op_thread_count": 1})
        if variant == "shrinks":
            shrink_arena(config)
        if variant == "no_arena":
            set_parameters(config, {"enable_mem_arena": "0", "enable_mem_pattern": "0"})
        write_config(triton.repository / name, config)
    names = [f"wide_{variant}" for variant in VARIANTS]
    triton.load(*names)
    yield files
    triton.unload(*names)


def infer(client: triton_http.InferenceServerClient, model: str, array: np.ndarray) -> np.ndarray:
    item = triton_http.InferInput("x", list(array.shape), "FP32")
    item.set_data_from_numpy(array, binary_data=True)
    return client.infer(model, [item]).as_numpy("y")


def stub_pss(model_file: Path) -> int:
    (stub,) = _stubs_of(model_file)
    return pss_bytes(stub) or 0


def test_a_shrinking_arena_gives_back_a_large_batch(triton: TritonHarness, variants: dict[str, Path]) -> None:
    rng = np.random.default_rng(1)
    small = rng.uniform(-1, 1, (1, 3, SIDE, SIDE)).astype(np.float32)
    large = rng.uniform(-1, 1, (LARGE_BATCH, 3, SIDE, SIDE)).astype(np.float32)
    growth, answers = {}, {}
    for variant in VARIANTS:
        model = f"wide_{variant}"
        answers[variant] = infer(triton.client(), model, small)
        before = stub_pss(variants[variant])
        infer(triton.client(), model, large)
        growth[variant] = stub_pss(variants[variant]) - before
    print(f"\nstub PSS growth after a batch of {LARGE_BATCH}: "
          + ", ".join(f"{variant} {value / MIB:.0f} MiB" for variant, value in growth.items()))
    for variant in ("shrinks", "no_arena"):
        assert np.array_equal(answers[variant], answers["keeps"]), variant
    # the kept arena holds the batch's activations (the hidden one alone is 50 MiB), the one without an arena
    # gives them all back, and the shrinking one at least the hidden activation's worth (it keeps its first region)
    assert growth["keeps"] - growth["no_arena"] > 40 * MIB
    assert growth["keeps"] - growth["shrinks"] > 25 * MIB
