"""ArcFace-interface ONNX recognisers with random weights ([N,3,112,112] float32 → [N,512]).

No real ArcFace file may be shipped or fetched here (InsightFace's weights are licensed for non-commercial
research only), so the parity tests and the bench build stand-ins with the same interface:

- `tiny`: two strided convolutions and a dense layer (a few MB, built in milliseconds) for tests;
- `iresnet50`: the architecture of buffalo_l's w600k_r50 (insightface recognition/arcface_torch
  backbones/iresnet.py: IBasicBlock, layers 3-4-14-3, BN-PReLU, a 512x7x7 → 512 dense head), same shapes and
  about the same cost (~175 MB of float32), random weights: for timing only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ALIGNED_SIZE = 112
EMBEDDING_SIZE = 512
OPSET = 13
IRESNET50_LAYERS = (3, 4, 14, 3)
IRESNET_WIDTHS = (64, 128, 256, 512)


class _Graph:
    """A tiny builder over onnx.helper: named initializers and nodes in order."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def constant(self, array: NDArray, kind: str = "w") -> str:
        from onnx import numpy_helper

        name = self._name(kind)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: object) -> str:
        from onnx import helper

        name = self._name(op)
        self.nodes.append(helper.make_node(op, inputs, [name + "_out"], name=name, **attributes))
        return name + "_out"

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int, bias: bool = True) -> str:
        std = np.sqrt(2.0 / (cin * kernel * kernel))
        weight = self.constant((self.rng.standard_normal((cout, cin, kernel, kernel)) * std).astype(np.float32))
        inputs = [x, weight]
        if bias:
            inputs.append(self.constant(np.zeros(cout, np.float32), "b"))
        pad = kernel // 2 if kernel % 2 else 0
        return self.node("Conv", inputs, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)

    def batchnorm(self, x: str, channels: int) -> str:
        scale = self.constant((1 + 0.1 * self.rng.standard_normal(channels)).astype(np.float32))
        shift = self.constant((0.1 * self.rng.standard_normal(channels)).astype(np.float32))
        mean = self.constant(np.zeros(channels, np.float32))
        var = self.constant(np.ones(channels, np.float32))
        return self.node("BatchNormalization", [x, scale, shift, mean, var], epsilon=1e-5)

    def prelu(self, x: str, channels: int) -> str:
        return self.node("PRelu", [x, self.constant(np.full((channels, 1, 1), 0.25, np.float32))])

    def dense(self, x: str, fan_in: int, fan_out: int) -> str:
        std = np.sqrt(1.0 / fan_in)
        weight = self.constant((self.rng.standard_normal((fan_out, fan_in)) * std).astype(np.float32))
        return self.node("Gemm", [x, weight, self.constant(np.zeros(fan_out, np.float32), "b")], transB=1)

    def save(self, path: Path, input_name: str, output: str, batch: int | str) -> Path:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes,
            "arcface_standin",
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, ALIGNED_SIZE, ALIGNED_SIZE])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, EMBEDDING_SIZE])],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path


def build_tiny(path: Path, *, seed: int = 0, normalises_input: bool = False, static_batch: bool = False) -> Path:
    """A small recogniser. `normalises_input`: the graph starts with Sub/Mul nodes (insightface then feeds raw
    0..255 pixels, mean 0 std 1). `static_batch`: input [1,3,112,112] and a Reshape pinned to batch 1, as
    some exported files are (export must give it a batch axis)."""
    g = _Graph(seed)
    x = "input.1"
    if normalises_input:
        x = g.node("Sub", [x, g.constant(np.array(127.5, np.float32))])
        g.nodes[-1].name = "Sub_0"
        x = g.node("Mul", [x, g.constant(np.array(1 / 127.5, np.float32))])
        g.nodes[-1].name = "Mul_1"
    x = g.node("Relu", [g.conv(x, 3, 8, kernel=4, stride=4)])
    x = g.node("Relu", [g.conv(x, 8, 16, kernel=2, stride=2)])
    if static_batch:
        x = g.node("Reshape", [x, g.constant(np.array([1, -1], np.int64), "shape")])
    else:
        x = g.node("Flatten", [x], axis=1)
    out = g.dense(x, 16 * 14 * 14, EMBEDDING_SIZE)
    return g.save(path, "input.1", out, 1 if static_batch else "None")


def build_iresnet50(path: Path, *, seed: int = 0) -> Path:
    """An IResNet-50 with random weights: the shape and cost of buffalo_l's w600k_r50."""
    g = _Graph(seed)
    x = g.prelu(g.batchnorm(g.conv("input.1", 3, 64, kernel=3, stride=1, bias=False), 64), 64)
    channels = 64
    for blocks, width in zip(IRESNET50_LAYERS, IRESNET_WIDTHS):
        for index in range(blocks):
            stride = 2 if index == 0 else 1
            y = g.batchnorm(x, channels)
            y = g.conv(y, channels, width, kernel=3, stride=1, bias=False)
            y = g.prelu(g.batchnorm(y, width), width)
            y = g.batchnorm(g.conv(y, width, width, kernel=3, stride=stride, bias=False), width)
            shortcut = x
            if stride != 1 or channels != width:
                shortcut = g.batchnorm(g.conv(x, channels, width, kernel=1, stride=stride, bias=False), width)
            x = g.node("Add", [y, shortcut])
            channels = width
    x = g.node("Flatten", [g.batchnorm(x, channels)], axis=1)
    out = g.dense(x, channels * 7 * 7, EMBEDDING_SIZE)
    return g.save(path, "input.1", out, "None")
