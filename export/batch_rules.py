"""The rules of export/batch_layout.py: where each operator leaves the batch of its inputs.

A tensor's batch is described by where it lies in memory (`Batched`), or, for integer vectors computed from
shapes, by which entries hold the batch size (`BatchInShape`). One rule an operator (or family of operators);
a rule raises `Refused` when the node cannot take the batch where its inputs hold it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from export.onnx_graph import constants, opset, static_shapes

# a slice end at least this large runs to the end of its axis, whatever the batch
SLICE_TO_END = 2**31 - 1
ELEMENTWISE = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "Asin", "Asinh", "Atan", "Atanh", "BitShift", "Cast", "Ceil", "Celu", "Clip",
    "Cos", "Cosh", "Div", "Dropout", "Elu", "Equal", "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual",
    "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "Max", "Mean",
    "Min", "Mish", "Mod", "Mul", "Neg", "Not", "Or", "Pow", "PRelu", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid",
    "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Where",
    "Xor",
})
REDUCE = frozenset({
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
    "ReduceSum", "ReduceSumSquare",
})
PER_ITEM = frozenset({  # operators that treat every row of their first axis on its own
    "AveragePool", "BatchNormalization", "Conv", "ConvTranspose", "GlobalAveragePool", "GlobalLpPool",
    "GlobalMaxPool", "InstanceNormalization", "LpPool", "LRN", "MaxPool",
})
SOFTMAX = frozenset({"Softmax", "LogSoftmax", "Hardmax"})
# nodes that pass a vector holding the batch size on unchanged (see BatchInShape)
SHAPE_PASSING = frozenset({"Cast", "Identity", "Squeeze", "Unsqueeze"})


@dataclass(frozen=True)
class Batched:
    """Where the batch lies in a tensor: at batch B, dim `axis` is B times its batch-1 size, and item b holds its
    indices o*B*inner + b*inner + i (o < size/inner, i < inner). inner = 1 on a batch-1 size of 1: the usual
    batch axis; [seq*batch, width] is Batched(0, 1), [seq, batch*heads, head_dim] is Batched(1, heads)."""

    axis: int
    inner: int


@dataclass(frozen=True)
class BatchInShape:
    """An integer vector computed from shapes (Shape -> Gather -> Concat, as `follow_batch_in_expands` builds)
    whose entries at `positions` are the batch size times their batch-1 value."""

    positions: frozenset[int]


State = Batched | BatchInShape | None  # None: the tensor does not depend on the batch


class Refused(Exception):
    """This node cannot take the batch where its inputs hold it."""


def describe(node: onnx.NodeProto) -> str:
    return f"{node.op_type} {node.name or node.output[0]}"


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


class LayoutGraph:
    """What the rules need to know about the batch-1 graph: static shapes and small constants."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.shapes = static_shapes(model)
        self.constants = constants(model.graph)
        for initializer in model.graph.initializer:
            self.shapes.setdefault(initializer.name, list(initializer.dims))
        self.opset = opset(model)

    def shape(self, name: str) -> list[int]:
        if name not in self.shapes:
            raise Refused(f"the shape of {name} is not static")
        return self.shapes[name]

    def value(self, name: str) -> NDArray[Any]:
        if name not in self.constants:
            raise Refused(f"{name} is computed, not a constant")
        return numpy_helper.to_array(self.constants[name])

    def axes(self, node: onnx.NodeProto, rank: int, input_index: int = 1) -> list[int] | None:
        """The `axes` of a node (an attribute before opset 13/18, an input since), made non-negative."""
        axes = attribute(node, "axes")
        if axes is None and len(node.input) > input_index and node.input[input_index]:
            axes = self.value(node.input[input_index]).tolist()
        return None if axes is None else [a % rank for a in axes]


def item_stride(graph: LayoutGraph, name: str, state: Batched) -> int:
    """Elements between consecutive items in memory (row-major), inside the outermost block holding them."""
    return state.inner * math.prod(graph.shape(name)[state.axis + 1 :])


def only_first_batched(node: onnx.NodeProto, states: list[State]) -> None:
    if any(s is not None for s in states[1:]):
        raise Refused(f"{describe(node)}: only its first input may hold the batch")


def broadcast(graph: LayoutGraph, node: onnx.NodeProto, inputs: list[str], states: list[State]) -> State:
    """Elementwise with numpy broadcasting: batched inputs must hold the batch alike, the others must be 1 there."""
    rank = len(graph.shape(node.output[0]))
    found: tuple[Batched, int] | None = None
    for name, state in zip(inputs, states):
        if isinstance(state, BatchInShape):
            raise Refused(f"{describe(node)}: arithmetic on the batch size")
        if isinstance(state, Batched):
            dims = graph.shape(name)
            aligned = (Batched(state.axis + rank - len(dims), state.inner), dims[state.axis])
            if found is not None and aligned != found:
                raise Refused(f"{describe(node)}: its inputs hold the batch on different axes")
            found = aligned
    if found is None:
        return None
    batched = found[0]
    for name, state in zip(inputs, states):
        if name and state is None:
            dims = graph.shape(name)
            index = batched.axis - (rank - len(dims))
            if index >= 0 and dims[index] != 1:
                raise Refused(f"{describe(node)}: {name} spans the batch axis")
    return batched


def reshape_options(graph: LayoutGraph, node: onnx.NodeProto, state: Batched) -> list[Batched]:
    """Every target axis that can hold the batch at the stride it has in the input: an axis of batch-1 size 1
    first (the frozen batch itself), then from the last axis to the first."""
    stride = item_stride(graph, node.input[0], state)
    target = graph.shape(node.output[0])
    if 0 in target:
        raise Refused(f"{describe(node)}: an empty dim")
    options = []
    for axis in range(len(target)):
        after = math.prod(target[axis + 1 :])
        if stride % after == 0 and target[axis] % (stride // after) == 0:
            options.append(Batched(axis, stride // after))
    if not options:
        raise Refused(f"{describe(node)}: no axis of the target can hold the batch")
    return sorted(options, key=lambda o: (target[o.axis] != 1, -o.axis))


def flatten(graph: LayoutGraph, node: onnx.NodeProto, state: Batched) -> Batched:
    dims = graph.shape(node.input[0])
    axis = attribute(node, "axis", 1) % max(len(dims), 1)
    stride = item_stride(graph, node.input[0], state)
    if state.axis < axis:
        return Batched(0, stride // math.prod(dims[axis:]))
    return Batched(1, stride)


def squeeze(graph: LayoutGraph, node: onnx.NodeProto, state: Batched) -> Batched:
    dims = graph.shape(node.input[0])
    axes = graph.axes(node, len(dims))
    if axes is None:
        axes = [i for i, d in enumerate(dims) if d == 1]
    if state.axis in axes:
        raise Refused(f"{describe(node)}: squeezes the batch axis")
    return Batched(state.axis - sum(a < state.axis for a in axes), state.inner)


def unsqueeze(graph: LayoutGraph, node: onnx.NodeProto, state: Batched) -> Batched:
    rank = len(graph.shape(node.output[0]))
    axes = graph.axes(node, rank) or []
    kept = [i for i in range(rank) if i not in axes]
    return Batched(kept[state.axis], state.inner)


def expand(graph: LayoutGraph, node: onnx.NodeProto, states: list[State]) -> State:
    data, shape = states
    out = graph.shape(node.output[0])
    if isinstance(shape, BatchInShape):
        if data is not None or len(shape.positions) != 1:
            raise Refused(f"{describe(node)}: expands batched data to a batched shape")
        (position,) = shape.positions
        axis = position + len(out) - graph.shape(node.input[1])[0]
        if out[axis] != 1:
            raise Refused(f"{describe(node)}: expands to a batch of {out[axis]}")
        return Batched(axis, 1)
    if shape is not None:
        raise Refused(f"{describe(node)}: a batched shape")
    if data is None:
        return None
    assert isinstance(data, Batched)
    target = graph.value(node.input[1]).tolist()
    axis = data.axis + len(out) - len(graph.shape(node.input[0]))
    index = axis - (len(out) - len(target))
    if index >= 0 and target[index] != 1:
        raise Refused(f"{describe(node)}: its constant shape spans the batch axis")
    return Batched(axis, data.inner)


def concat(graph: LayoutGraph, node: onnx.NodeProto, states: list[State]) -> State:
    if any(isinstance(s, BatchInShape) for s in states):
        positions: set[int] = set()
        offset = 0
        for name, state in zip(node.input, states):
            if isinstance(state, Batched):
                raise Refused(f"{describe(node)}: joins data with a shape")
            if isinstance(state, BatchInShape):
                positions.update(offset + p for p in state.positions)
            offset += math.prod(graph.shape(name))
        return BatchInShape(frozenset(positions))
    batched = {s for s in states if s is not None}
    if not batched:
        return None
    if len(batched) > 1:
        raise Refused(f"{describe(node)}: joins inputs that hold the batch on different axes")
    (state,) = batched
    assert isinstance(state, Batched)
    if state.axis == attribute(node, "axis") % len(graph.shape(node.output[0])):
        raise Refused(f"{describe(node)}: joins along the batch axis")
    # a batch-independent input (a class token folded into a constant [1, 1, width]) is repeated for every item
    # by the rewrite (_broadcast_concatenated), which needs the batch to be a whole axis of its own
    pure = state.inner == 1 and all(graph.shape(n)[state.axis] == 1 for n in node.input)
    if None in states and not pure:
        raise Refused(f"{describe(node)}: joins batched data with data that spans the batch axis")
    return state


def slice_positions(graph: LayoutGraph, node: onnx.NodeProto, length: int) -> list[int]:
    """The indices a Slice keeps of a 1-D vector."""
    if graph.opset < 10:
        starts, ends = attribute(node, "starts"), attribute(node, "ends")
        steps = [1]
    else:
        starts, ends = graph.value(node.input[1]).tolist(), graph.value(node.input[2]).tolist()
        steps = graph.value(node.input[4]).tolist() if len(node.input) > 4 and node.input[4] else [1]
    return list(range(length))[slice(starts[0], ends[0], steps[0])]


def slice_rule(graph: LayoutGraph, node: onnx.NodeProto, states: list[State]) -> State:
    data = states[0]
    only_first_batched(node, states)
    if isinstance(data, BatchInShape):
        kept = slice_positions(graph, node, graph.shape(node.input[0])[0])
        positions = frozenset(i for i, p in enumerate(kept) if p in data.positions)
        return BatchInShape(positions) if positions else None
    if data is None:
        return None
    rank = len(graph.shape(node.input[0]))
    if graph.opset < 10:
        starts, ends = attribute(node, "starts"), attribute(node, "ends")
        axes = [a % rank for a in attribute(node, "axes", range(len(starts)))]
        steps = [1] * len(starts)
    else:
        starts, ends = graph.value(node.input[1]).tolist(), graph.value(node.input[2]).tolist()
        axes = graph.axes(node, rank, 3) or list(range(len(starts)))
        steps = graph.value(node.input[4]).tolist() if len(node.input) > 4 and node.input[4] else [1] * len(starts)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if axis == data.axis and not (start == 0 and end >= SLICE_TO_END and step == 1):
            raise Refused(f"{describe(node)}: slices the batch axis")
    return data


def gather(graph: LayoutGraph, node: onnx.NodeProto, states: list[State]) -> State:
    data, indices = states
    if isinstance(indices, BatchInShape) or (isinstance(data, Batched) and isinstance(indices, Batched)):
        raise Refused(f"{describe(node)}: indices hold the batch")
    rank = len(graph.shape(node.input[0]))
    axis = attribute(node, "axis", 0) % rank
    if isinstance(data, BatchInShape):
        picked = (graph.value(node.input[1]) % graph.shape(node.input[0])[0]).reshape(-1).tolist()
        positions = frozenset(i for i, p in enumerate(picked) if p in data.positions)
        return BatchInShape(positions) if positions else None
    if isinstance(indices, Batched):
        return Batched(axis + indices.axis, indices.inner)
    if data is None:
        return None
    if data.axis == axis:
        raise Refused(f"{describe(node)}: gathers along the batch axis")
    index_rank = len(graph.shape(node.input[1]))
    return data if data.axis < axis else Batched(data.axis - 1 + index_rank, data.inner)


def matmul(graph: LayoutGraph, node: onnx.NodeProto, states: list[State]) -> State:
    """[..., M, K] @ [..., K, N]: the batch may be in M of the first, N of the second, or in a stacking axis."""
    if all(s is None for s in states):
        return None
    ranks = [len(graph.shape(n)) for n in node.input]
    rank = len(graph.shape(node.output[0]))
    if min(ranks) < 2:
        raise Refused(f"{describe(node)}: a vector operand")
    found: Batched | None = None
    for state, r, contracted, kept, out_axis in ((states[0], ranks[0], ranks[0] - 1, ranks[0] - 2, rank - 2),
                                                 (states[1], ranks[1], ranks[1] - 2, ranks[1] - 1, rank - 1)):
        if state is None:
            continue
        assert isinstance(state, Batched)
        if state.axis == contracted:
            raise Refused(f"{describe(node)}: contracts the batch axis")
        candidate = Batched(out_axis if state.axis == kept else state.axis + rank - r, state.inner)
        if found is not None and candidate != found:
            raise Refused(f"{describe(node)}: combines the items of a batch")
        found = candidate
    assert found is not None
    if found.axis < rank - 2:  # a stacking axis: the operands broadcast against each other there
        sizes = set()
        for name, state, r in zip(node.input, states, ranks):
            index = found.axis - rank + r
            if index >= 0 and state is None and graph.shape(name)[index] != 1:
                raise Refused(f"{describe(node)}: {name} spans the batch axis")
            if index >= 0 and state is not None:
                sizes.add(graph.shape(name)[index])
        if len(sizes) > 1:
            raise Refused(f"{describe(node)}: its inputs hold the batch on axes of different sizes")
    return found


def gemm(graph: LayoutGraph, node: onnx.NodeProto, states: list[State]) -> State:
    only_first_batched(node, states)
    data = states[0]
    if data is None:
        return None
    assert isinstance(data, Batched)
    if data.axis != (1 if attribute(node, "transA", 0) else 0):
        raise Refused(f"{describe(node)}: contracts the batch axis")
    if len(node.input) > 2 and node.input[2]:
        bias = graph.shape(node.input[2])
        if len(bias) == 2 and bias[0] != 1:
            raise Refused(f"{describe(node)}: its bias spans the batch axis")
    return Batched(0, data.inner)


def reduce_rule(graph: LayoutGraph, node: onnx.NodeProto, state: Batched) -> Batched:
    rank = len(graph.shape(node.input[0]))
    if node.op_type in ("ArgMax", "ArgMin"):
        axes: list[int] | None = [attribute(node, "axis", 0) % rank]
    else:
        axes = graph.axes(node, rank)
    if not axes:
        if attribute(node, "noop_with_empty_axes", 0):
            return state
        axes = list(range(rank))
    if state.axis in axes:
        raise Refused(f"{describe(node)}: reduces over the batch axis")
    if attribute(node, "keepdims", 1):
        return state
    return Batched(state.axis - sum(a < state.axis for a in axes), state.inner)


def normalised_from(graph: LayoutGraph, node: onnx.NodeProto, state: Batched, axis: int, whole_tail: bool) -> Batched:
    """Softmax-like nodes: the batch axis must stay outside the normalised axis (or axes from it on)."""
    axis %= len(graph.shape(node.input[0]))
    if state.axis == axis or (whole_tail and state.axis > axis):
        raise Refused(f"{describe(node)}: normalises over the batch axis")
    return state


def shape_rule(graph: LayoutGraph, node: onnx.NodeProto, state: State) -> State:
    if not isinstance(state, Batched):
        return None
    rank = len(graph.shape(node.input[0]))
    start, end = attribute(node, "start", 0), attribute(node, "end", rank)
    start, end = max(0, start + rank if start < 0 else start), min(rank, end + rank if end < 0 else end)
    return BatchInShape(frozenset({state.axis - start})) if start <= state.axis < end else None
