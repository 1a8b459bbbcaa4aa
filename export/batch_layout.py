"""Free the batch of a graph traced with a batch of 1 where the trace folded it into other axes.

torch traces `nn.MultiheadAttention` sequence-first, so open_clip's visual towers reshape to
[seq, batch*heads, head_dim], [seq*batch, width] and [seq, batch, width]: no leading 1 marks the batch, and
export/batching.py's constant rewrite cannot free it. Here the batch is located in every tensor's memory layout
(which axis holds it, at which stride inside that axis) by walking the graph node by node with a rule per
operator. A Reshape passes the batch to whichever target axis can hold it at the same stride; when several can
(layout-equivalent shapes such as [seq*batch, width] and [seq, batch*width]) the first is tried, and a later node
that cannot take it undoes the choice: a MatMul contracting the batch axis, a reduction or normalisation over it,
two inputs holding it on different axes (items combined), a broadcast that no longer fits. Each chosen axis
becomes the -1 of its Reshape target (the one free dim: the batch times its batch-1 size); every other dim keeps
its batch-1 value; a batch-independent input concatenated with batched data (a class token folded into a
constant [1, 1, width]) is expanded to the batch. Operators without a rule refuse, and so does a search that does not settle: the caller then
serves the graph another way. The result is proven against batch-1 runs like the constant rewrite
(export/batching.py `batchable`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from export.batching import (
    BatchRewriteError,
    _constants,
    _drop_unused_initializers,
    _static_shapes,
    free_first_dims,
)

# a slice end at least this large runs to the end of its axis, whatever the batch
SLICE_TO_END = 2**31 - 1
# how many node visits the search may spend, per node of the graph, before it gives up
SEARCH_VISITS_PER_NODE = 50

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


class _Refused(Exception):
    """This node cannot take the batch where its inputs hold it."""


def _name(node: onnx.NodeProto) -> str:
    return f"{node.op_type} {node.name or node.output[0]}"


def _attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


class _Graph:
    """What the rules need to know about the batch-1 graph: static shapes and small constants."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.shapes = _static_shapes(model)
        self.constants = _constants(model)
        for initializer in model.graph.initializer:
            self.shapes.setdefault(initializer.name, list(initializer.dims))
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def shape(self, name: str) -> list[int]:
        if name not in self.shapes:
            raise _Refused(f"the shape of {name} is not static")
        return self.shapes[name]

    def value(self, name: str) -> NDArray[Any]:
        if name not in self.constants:
            raise _Refused(f"{name} is computed, not a constant")
        return numpy_helper.to_array(self.constants[name])

    def axes(self, node: onnx.NodeProto, rank: int, input_index: int = 1) -> list[int] | None:
        """The `axes` of a node (an attribute before opset 13/18, an input since), made non-negative."""
        axes = _attribute(node, "axes")
        if axes is None and len(node.input) > input_index and node.input[input_index]:
            axes = self.value(node.input[input_index]).tolist()
        return None if axes is None else [a % rank for a in axes]


def _stride(graph: _Graph, name: str, state: Batched) -> int:
    """Elements between consecutive items in memory (row-major), inside the outermost block holding them."""
    return state.inner * math.prod(graph.shape(name)[state.axis + 1 :])


def _only_first_batched(node: onnx.NodeProto, states: list[State]) -> None:
    if any(s is not None for s in states[1:]):
        raise _Refused(f"{_name(node)}: only its first input may hold the batch")


def _broadcast(graph: _Graph, node: onnx.NodeProto, inputs: list[str], states: list[State]) -> State:
    """Elementwise with numpy broadcasting: batched inputs must hold the batch alike, the others must be 1 there."""
    rank = len(graph.shape(node.output[0]))
    found: tuple[Batched, int] | None = None
    for name, state in zip(inputs, states):
        if isinstance(state, BatchInShape):
            raise _Refused(f"{_name(node)}: arithmetic on the batch size")
        if isinstance(state, Batched):
            dims = graph.shape(name)
            aligned = (Batched(state.axis + rank - len(dims), state.inner), dims[state.axis])
            if found is not None and aligned != found:
                raise _Refused(f"{_name(node)}: its inputs hold the batch on different axes")
            found = aligned
    if found is None:
        return None
    batched = found[0]
    for name, state in zip(inputs, states):
        if name and state is None:
            dims = graph.shape(name)
            index = batched.axis - (rank - len(dims))
            if index >= 0 and dims[index] != 1:
                raise _Refused(f"{_name(node)}: {name} spans the batch axis")
    return batched


def _reshape_options(graph: _Graph, node: onnx.NodeProto, state: Batched) -> list[Batched]:
    """Every target axis that can hold the batch at the stride it has in the input: an axis of batch-1 size 1
    first (the frozen batch itself), then from the last axis to the first."""
    stride = _stride(graph, node.input[0], state)
    target = graph.shape(node.output[0])
    if 0 in target:
        raise _Refused(f"{_name(node)}: an empty dim")
    options = []
    for axis in range(len(target)):
        after = math.prod(target[axis + 1 :])
        if stride % after == 0 and target[axis] % (stride // after) == 0:
            options.append(Batched(axis, stride // after))
    if not options:
        raise _Refused(f"{_name(node)}: no axis of the target can hold the batch")
    return sorted(options, key=lambda o: (target[o.axis] != 1, -o.axis))


def _flatten(graph: _Graph, node: onnx.NodeProto, state: Batched) -> Batched:
    dims = graph.shape(node.input[0])
    axis = _attribute(node, "axis", 1) % max(len(dims), 1)
    stride = _stride(graph, node.input[0], state)
    if state.axis < axis:
        return Batched(0, stride // math.prod(dims[axis:]))
    return Batched(1, stride)


def _squeeze(graph: _Graph, node: onnx.NodeProto, state: Batched) -> Batched:
    dims = graph.shape(node.input[0])
    axes = graph.axes(node, len(dims))
    if axes is None:
        axes = [i for i, d in enumerate(dims) if d == 1]
    if state.axis in axes:
        raise _Refused(f"{_name(node)}: squeezes the batch axis")
    return Batched(state.axis - sum(a < state.axis for a in axes), state.inner)


def _unsqueeze(graph: _Graph, node: onnx.NodeProto, state: Batched) -> Batched:
    rank = len(graph.shape(node.output[0]))
    axes = graph.axes(node, rank) or []
    kept = [i for i in range(rank) if i not in axes]
    return Batched(kept[state.axis], state.inner)


def _expand(graph: _Graph, node: onnx.NodeProto, states: list[State]) -> State:
    data, shape = states
    out = graph.shape(node.output[0])
    if isinstance(shape, BatchInShape):
        if data is not None or len(shape.positions) != 1:
            raise _Refused(f"{_name(node)}: expands batched data to a batched shape")
        (position,) = shape.positions
        axis = position + len(out) - graph.shape(node.input[1])[0]
        if out[axis] != 1:
            raise _Refused(f"{_name(node)}: expands to a batch of {out[axis]}")
        return Batched(axis, 1)
    if shape is not None:
        raise _Refused(f"{_name(node)}: a batched shape")
    if data is None:
        return None
    assert isinstance(data, Batched)
    target = graph.value(node.input[1]).tolist()
    axis = data.axis + len(out) - len(graph.shape(node.input[0]))
    index = axis - (len(out) - len(target))
    if index >= 0 and target[index] != 1:
        raise _Refused(f"{_name(node)}: its constant shape spans the batch axis")
    return Batched(axis, data.inner)


def _concat(graph: _Graph, node: onnx.NodeProto, states: list[State]) -> State:
    if any(isinstance(s, BatchInShape) for s in states):
        positions: set[int] = set()
        offset = 0
        for name, state in zip(node.input, states):
            if isinstance(state, Batched):
                raise _Refused(f"{_name(node)}: joins data with a shape")
            if isinstance(state, BatchInShape):
                positions.update(offset + p for p in state.positions)
            offset += math.prod(graph.shape(name))
        return BatchInShape(frozenset(positions))
    batched = {s for s in states if s is not None}
    if not batched:
        return None
    if len(batched) > 1:
        raise _Refused(f"{_name(node)}: joins inputs that hold the batch on different axes")
    (state,) = batched
    assert isinstance(state, Batched)
    if state.axis == _attribute(node, "axis") % len(graph.shape(node.output[0])):
        raise _Refused(f"{_name(node)}: joins along the batch axis")
    # a batch-independent input (a class token folded into a constant [1, 1, width]) is repeated for every item
    # by the rewrite (_broadcast_concatenated), which needs the batch to be a whole axis of its own
    pure = state.inner == 1 and all(graph.shape(n)[state.axis] == 1 for n in node.input)
    if None in states and not pure:
        raise _Refused(f"{_name(node)}: joins batched data with data that spans the batch axis")
    return state


def _slice_positions(graph: _Graph, node: onnx.NodeProto, length: int) -> list[int]:
    """The indices a Slice keeps of a 1-D vector."""
    if graph.opset < 10:
        starts, ends = _attribute(node, "starts"), _attribute(node, "ends")
        steps = [1]
    else:
        starts, ends = graph.value(node.input[1]).tolist(), graph.value(node.input[2]).tolist()
        steps = graph.value(node.input[4]).tolist() if len(node.input) > 4 and node.input[4] else [1]
    return list(range(length))[slice(starts[0], ends[0], steps[0])]


def _slice(graph: _Graph, node: onnx.NodeProto, states: list[State]) -> State:
    data = states[0]
    _only_first_batched(node, states)
    if isinstance(data, BatchInShape):
        kept = _slice_positions(graph, node, graph.shape(node.input[0])[0])
        positions = frozenset(i for i, p in enumerate(kept) if p in data.positions)
        return BatchInShape(positions) if positions else None
    if data is None:
        return None
    rank = len(graph.shape(node.input[0]))
    if graph.opset < 10:
        starts, ends = _attribute(node, "starts"), _attribute(node, "ends")
        axes = [a % rank for a in _attribute(node, "axes", range(len(starts)))]
        steps = [1] * len(starts)
    else:
        starts, ends = graph.value(node.input[1]).tolist(), graph.value(node.input[2]).tolist()
        axes = graph.axes(node, rank, 3) or list(range(len(starts)))
        steps = graph.value(node.input[4]).tolist() if len(node.input) > 4 and node.input[4] else [1] * len(starts)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if axis == data.axis and not (start == 0 and end >= SLICE_TO_END and step == 1):
            raise _Refused(f"{_name(node)}: slices the batch axis")
    return data


def _gather(graph: _Graph, node: onnx.NodeProto, states: list[State]) -> State:
    data, indices = states
    if isinstance(indices, BatchInShape) or (isinstance(data, Batched) and isinstance(indices, Batched)):
        raise _Refused(f"{_name(node)}: indices hold the batch")
    rank = len(graph.shape(node.input[0]))
    axis = _attribute(node, "axis", 0) % rank
    if isinstance(data, BatchInShape):
        picked = (graph.value(node.input[1]) % graph.shape(node.input[0])[0]).reshape(-1).tolist()
        positions = frozenset(i for i, p in enumerate(picked) if p in data.positions)
        return BatchInShape(positions) if positions else None
    if isinstance(indices, Batched):
        return Batched(axis + indices.axis, indices.inner)
    if data is None:
        return None
    if data.axis == axis:
        raise _Refused(f"{_name(node)}: gathers along the batch axis")
    index_rank = len(graph.shape(node.input[1]))
    return data if data.axis < axis else Batched(data.axis - 1 + index_rank, data.inner)


def _matmul(graph: _Graph, node: onnx.NodeProto, states: list[State]) -> State:
    """[..., M, K] @ [..., K, N]: the batch may be in M of the first, N of the second, or in a stacking axis."""
    if all(s is None for s in states):
        return None
    ranks = [len(graph.shape(n)) for n in node.input]
    rank = len(graph.shape(node.output[0]))
    if min(ranks) < 2:
        raise _Refused(f"{_name(node)}: a vector operand")
    found: Batched | None = None
    for state, r, contracted, kept, out_axis in ((states[0], ranks[0], ranks[0] - 1, ranks[0] - 2, rank - 2),
                                                 (states[1], ranks[1], ranks[1] - 2, ranks[1] - 1, rank - 1)):
        if state is None:
            continue
        assert isinstance(state, Batched)
        if state.axis == contracted:
            raise _Refused(f"{_name(node)}: contracts the batch axis")
        candidate = Batched(out_axis if state.axis == kept else state.axis + rank - r, state.inner)
        if found is not None and candidate != found:
            raise _Refused(f"{_name(node)}: combines the items of a batch")
        found = candidate
    assert found is not None
    if found.axis < rank - 2:  # a stacking axis: the operands broadcast against each other there
        sizes = set()
        for name, state, r in zip(node.input, states, ranks):
            index = found.axis - rank + r
            if index >= 0 and state is None and graph.shape(name)[index] != 1:
                raise _Refused(f"{_name(node)}: {name} spans the batch axis")
            if index >= 0 and state is not None:
                sizes.add(graph.shape(name)[index])
        if len(sizes) > 1:
            raise _Refused(f"{_name(node)}: its inputs hold the batch on axes of different sizes")
    return found


def _gemm(graph: _Graph, node: onnx.NodeProto, states: list[State]) -> State:
    _only_first_batched(node, states)
    data = states[0]
    if data is None:
        return None
    assert isinstance(data, Batched)
    if data.axis != (1 if _attribute(node, "transA", 0) else 0):
        raise _Refused(f"{_name(node)}: contracts the batch axis")
    if len(node.input) > 2 and node.input[2]:
        bias = graph.shape(node.input[2])
        if len(bias) == 2 and bias[0] != 1:
            raise _Refused(f"{_name(node)}: its bias spans the batch axis")
    return Batched(0, data.inner)


def _reduce(graph: _Graph, node: onnx.NodeProto, state: Batched) -> Batched:
    rank = len(graph.shape(node.input[0]))
    if node.op_type in ("ArgMax", "ArgMin"):
        axes: list[int] | None = [_attribute(node, "axis", 0) % rank]
    else:
        axes = graph.axes(node, rank)
    if not axes:
        if _attribute(node, "noop_with_empty_axes", 0):
            return state
        axes = list(range(rank))
    if state.axis in axes:
        raise _Refused(f"{_name(node)}: reduces over the batch axis")
    if _attribute(node, "keepdims", 1):
        return state
    return Batched(state.axis - sum(a < state.axis for a in axes), state.inner)


def _normalised_from(graph: _Graph, node: onnx.NodeProto, state: Batched, axis: int, whole_tail: bool) -> Batched:
    """Softmax-like nodes: the batch axis must stay outside the normalised axis (or axes from it on)."""
    axis %= len(graph.shape(node.input[0]))
    if state.axis == axis or (whole_tail and state.axis > axis):
        raise _Refused(f"{_name(node)}: normalises over the batch axis")
    return state


def _shape(graph: _Graph, node: onnx.NodeProto, state: State) -> State:
    if not isinstance(state, Batched):
        return None
    rank = len(graph.shape(node.input[0]))
    start, end = _attribute(node, "start", 0), _attribute(node, "end", rank)
    start, end = max(0, start + rank if start < 0 else start), min(rank, end + rank if end < 0 else end)
    return BatchInShape(frozenset({state.axis - start})) if start <= state.axis < end else None


def _outputs(graph: _Graph, node: onnx.NodeProto, states: list[State]) -> list[State]:
    """The state of a node's outputs (all of them alike), or several to choose from (a Reshape of batched data);
    raises _Refused when the node cannot take the batch where its inputs hold it."""
    op = node.op_type
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        raise _Refused(f"{_name(node)}: control flow")  # a body may read batched tensors of the outer graph
    if all(s is None for s in states):
        return [None]
    if node.domain not in ("", "ai.onnx"):
        raise _Refused(f"{_name(node)}: operator of domain {node.domain}")
    first = states[0]
    # the nodes that may meet the batch size itself (see BatchInShape)
    if op in SHAPE_PASSING and isinstance(first, BatchInShape):
        _only_first_batched(node, states)
        if len(graph.shape(node.output[0])) > 1:
            raise _Refused(f"{_name(node)}: makes the batch size a matrix")
        return [first]
    if op in ELEMENTWISE:
        inputs = list(node.input[:1]) if op == "Dropout" else list(node.input)
        return [_broadcast(graph, node, inputs, states[: len(inputs)])]
    if op == "Shape":
        return [_shape(graph, node, first)]
    if op == "Expand":
        return [_expand(graph, node, states)]
    if op == "Concat":
        return [_concat(graph, node, states)]
    if op == "Gather":
        return [_gather(graph, node, states)]
    if op == "Slice":
        return [_slice(graph, node, states)]
    if any(isinstance(s, BatchInShape) for s in states):
        raise _Refused(f"{_name(node)}: {op} of a shape computed from the batch")
    # data nodes
    if op == "MatMul":
        return [_matmul(graph, node, states)]
    if op == "Gemm":
        return [_gemm(graph, node, states)]
    if op == "Reshape" and states[1] is not None:
        raise _Refused(f"{_name(node)}: a target computed from batched data")
    _only_first_batched(node, states)
    assert isinstance(first, Batched)
    rank = len(graph.shape(node.input[0]))
    if op == "Reshape":
        return _reshape_options(graph, node, first)
    if op in ("Identity", "CastLike"):
        return [first]
    if op == "Transpose":
        perm = list(_attribute(node, "perm") or reversed(range(rank)))
        return [Batched(perm.index(first.axis), first.inner)]
    if op == "Flatten":
        return [_flatten(graph, node, first)]
    if op == "Squeeze":
        return [_squeeze(graph, node, first)]
    if op == "Unsqueeze":
        return [_unsqueeze(graph, node, first)]
    if op == "Split":
        if first.axis == _attribute(node, "axis", 0) % rank:
            raise _Refused(f"{_name(node)}: splits the batch axis")
        return [first]
    if op in REDUCE or op in ("ArgMax", "ArgMin"):
        return [_reduce(graph, node, first)]
    if op in SOFTMAX:
        old = graph.opset < 13  # before opset 13 these work on the 2-D view [:axis] x [axis:]
        return [_normalised_from(graph, node, first, _attribute(node, "axis", 1 if old else -1), whole_tail=old)]
    if op == "LayerNormalization":
        return [_normalised_from(graph, node, first, _attribute(node, "axis", -1), whole_tail=True)]
    if op == "LpNormalization":
        return [_normalised_from(graph, node, first, _attribute(node, "axis", -1), whole_tail=False)]
    if op in PER_ITEM:
        if first.axis != 0 or len([o for o in node.output if o]) > 1:
            raise _Refused(f"{_name(node)}: the batch is not its first axis")
        return [first]
    if op == "Tile":
        if graph.value(node.input[1]).tolist()[first.axis] != 1:
            raise _Refused(f"{_name(node)}: tiles the batch axis")
        return [first]
    if op == "Pad":
        pads = _attribute(node, "pads") if graph.opset < 11 else graph.value(node.input[1]).tolist()
        if (len(node.input) > 3 and node.input[3]) or pads[first.axis] or pads[first.axis + rank]:
            raise _Refused(f"{_name(node)}: pads the batch axis")
        return [first]
    raise _Refused(f"{_name(node)}: no rule for {op}")


def _check_outputs(graph: _Graph, model: onnx.ModelProto, states: dict[str, State]) -> None:
    for value in model.graph.output:
        state = states.get(value.name)
        if state != Batched(0, 1) or graph.shape(value.name)[0] != 1:
            raise _Refused(f"output {value.name} does not hold the batch as its first axis ({state})")


def locate_batch(model: onnx.ModelProto) -> tuple[dict[str, State], dict[str, list[int]]]:
    """Where the batch lies in every tensor of `model` (inputs: their first axis), with the batch-1 shapes.

    A depth-first search over the Reshapes' choices, in graph order: a refusal undoes the latest choice that still
    has alternatives (every choice is remembered with the states before it). BatchRewriteError, with the refusal
    that got furthest through the graph, when no assignment reaches the outputs."""
    try:
        graph = _Graph(model)
    except Exception as error:  # noqa: BLE001 - shape inference failing on the graph
        raise BatchRewriteError(f"shape inference: {type(error).__name__}: {error}") from error
    nodes = list(model.graph.node)
    states: dict[str, State] = {}
    for value in model.graph.input:
        if value.name in graph.constants:
            continue
        dims = graph.shapes.get(value.name)
        if not dims or dims[0] != 1:
            raise BatchRewriteError(f"input {value.name} does not have a batch of 1 ({dims})")
        states[value.name] = Batched(0, 1)
    choices: list[tuple[int, list[State], int, dict[str, State]]] = []  # node, options, taken, states before
    budget = SEARCH_VISITS_PER_NODE * len(nodes)
    furthest = (-1, "")
    index = visits = 0
    while True:
        try:
            if index == len(nodes):
                _check_outputs(graph, model, states)
                return states, graph.shapes
            node = nodes[index]
            visits += 1
            if visits > budget:
                raise BatchRewriteError(f"no batch layout found in {budget} node visits (furthest: {furthest[1]})")
            options = _outputs(graph, node, [states.get(n) if n else None for n in node.input])
            taken = 0
            if len(options) > 1:
                choices.append((index, options, taken, dict(states)))
        except _Refused as refusal:
            if index >= furthest[0]:
                furthest = (index, str(refusal))
            while choices and choices[-1][2] + 1 == len(choices[-1][1]):
                choices.pop()
            if not choices:
                raise BatchRewriteError(furthest[1]) from None
            index, options, taken, before = choices[-1]
            taken += 1
            choices[-1] = (index, options, taken, before)
            states = dict(before)
            node = nodes[index]
        for output in node.output:
            if output:
                states[output] = options[taken]
        index += 1


def _broadcast_concatenated(model: onnx.ModelProto, states: dict[str, State], shapes: dict[str, list[int]]) -> None:
    """Batch-independent inputs of a Concat of batched data are expanded to the batch (the first input's dim 0
    spliced into their own shape) right before the Concat."""
    batch = "batch_size__layout"
    nodes: list[onnx.NodeProto] = []
    for original in model.graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        place = states.get(node.output[0]) if node.op_type == "Concat" else None
        for k, name in enumerate(node.input):
            if not isinstance(place, Batched) or not name or states.get(name) is not None:
                continue
            dims = shapes[name]
            pieces = []
            for part, values in (("before", dims[: place.axis]), ("after", dims[place.axis + 1 :])):
                if values:
                    pieces.append(f"{name}__{part}_batch")
                    model.graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), pieces[-1]))
            pieces.insert(1 if place.axis else 0, batch)
            shape, expanded = f"{name}__{node.output[0]}__batched_shape", f"{name}__{node.output[0]}__batched"
            nodes.append(onnx.helper.make_node("Concat", pieces, [shape], axis=0))
            nodes.append(onnx.helper.make_node("Expand", [name, shape], [expanded]))
            node.input[k] = expanded
        nodes.append(node)
    if len(nodes) == len(model.graph.node):
        return
    first = next(v.name for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer})
    model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), f"{batch}__index"))
    nodes[:0] = [onnx.helper.make_node("Shape", [first], [f"{batch}__shape"]),
                 onnx.helper.make_node("Gather", [f"{batch}__shape", f"{batch}__index"], [batch], axis=0)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def free_folded_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose Reshape targets leave free (-1) the axis that holds the batch, and whose inputs
    and outputs have a free first dim; BatchRewriteError when the batch cannot be followed through the graph."""
    states, shapes = locate_batch(model)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    for node in rewritten.graph.node:
        if node.op_type != "Reshape" or not isinstance(states.get(node.input[0]), Batched):
            continue
        place = states[node.output[0]]
        assert isinstance(place, Batched)
        target = np.array(shapes[node.output[0]], dtype=np.int64)
        target[place.axis] = -1
        node.input[1] = f"{node.output[0]}__batch_target"
        rewritten.graph.initializer.append(numpy_helper.from_array(target, node.input[1]))
    _broadcast_concatenated(rewritten, states, shapes)
    free_first_dims(rewritten)
    _drop_unused_initializers(rewritten)
    return rewritten
