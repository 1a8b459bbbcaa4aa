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

import numpy as np
import onnx
from onnx import numpy_helper

from export.batch_rules import (
    ELEMENTWISE, PER_ITEM, REDUCE, SHAPE_PASSING, SOFTMAX, Batched, BatchInShape, LayoutGraph, Refused, State,
    attribute, broadcast, concat, describe, expand, flatten, gather, gemm, matmul, normalised_from, only_first_batched,
    reduce_rule, reshape_options, shape_rule, slice_rule, squeeze, unsqueeze,
)
from export.batching import BatchRewriteError, free_first_dims
from export.onnx_graph import drop_unused_initializers, graph_inputs

__all__ = ["Batched", "BatchInShape", "free_folded_batch", "locate_batch"]

# how many node visits the search may spend, per node of the graph, before it gives up
SEARCH_VISITS_PER_NODE = 50


def _split(graph: LayoutGraph, node: onnx.NodeProto, first: Batched) -> Batched:
    if first.axis == attribute(node, "axis", 0) % len(graph.shape(node.input[0])):
        raise Refused(f"{describe(node)}: splits the batch axis")
    return first


def _transpose(graph: LayoutGraph, node: onnx.NodeProto, first: Batched) -> Batched:
    perm = list(attribute(node, "perm") or reversed(range(len(graph.shape(node.input[0])))))
    return Batched(perm.index(first.axis), first.inner)


def _softmax(graph: LayoutGraph, node: onnx.NodeProto, first: Batched) -> Batched:
    old = graph.opset < 13  # before opset 13 these work on the 2-D view [:axis] x [axis:]
    return normalised_from(graph, node, first, attribute(node, "axis", 1 if old else -1), whole_tail=old)


def _per_item(graph: LayoutGraph, node: onnx.NodeProto, first: Batched) -> Batched:
    if first.axis != 0 or len([o for o in node.output if o]) > 1:
        raise Refused(f"{describe(node)}: the batch is not its first axis")
    return first


def _tile(graph: LayoutGraph, node: onnx.NodeProto, first: Batched) -> Batched:
    if graph.value(node.input[1]).tolist()[first.axis] != 1:
        raise Refused(f"{describe(node)}: tiles the batch axis")
    return first


def _pad(graph: LayoutGraph, node: onnx.NodeProto, first: Batched) -> Batched:
    rank = len(graph.shape(node.input[0]))
    pads = attribute(node, "pads") if graph.opset < 11 else graph.value(node.input[1]).tolist()
    if (len(node.input) > 3 and node.input[3]) or pads[first.axis] or pads[first.axis + rank]:
        raise Refused(f"{describe(node)}: pads the batch axis")
    return first


# the nodes that may meet the batch size itself (see BatchInShape), given every input's state
SHAPE_AWARE = {"Expand": expand, "Concat": concat, "Gather": gather, "Slice": slice_rule}
# data nodes of several batched inputs
MULTI_INPUT = {"MatMul": matmul, "Gemm": gemm}
# data nodes whose first input alone holds the batch
FIRST_INPUT = {
    "Identity": lambda graph, node, first: first,
    "CastLike": lambda graph, node, first: first,
    "Transpose": _transpose,
    "Flatten": flatten,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Split": _split,
    "ArgMax": reduce_rule,
    "ArgMin": reduce_rule,
    **dict.fromkeys(REDUCE, reduce_rule),
    **dict.fromkeys(SOFTMAX, _softmax),
    "LayerNormalization": lambda graph, node, first: normalised_from(
        graph, node, first, attribute(node, "axis", -1), whole_tail=True),
    "LpNormalization": lambda graph, node, first: normalised_from(
        graph, node, first, attribute(node, "axis", -1), whole_tail=False),
    **dict.fromkeys(PER_ITEM, _per_item),
    "Tile": _tile,
    "Pad": _pad,
}


def _outputs(graph: LayoutGraph, node: onnx.NodeProto, states: list[State]) -> list[State]:
    """The state of a node's outputs (all of them alike), or several to choose from (a Reshape of batched data);
    raises Refused when the node cannot take the batch where its inputs hold it."""
    op = node.op_type
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        raise Refused(f"{describe(node)}: control flow")  # a body may read batched tensors of the outer graph
    if all(s is None for s in states):
        return [None]
    if node.domain not in ("", "ai.onnx"):
        raise Refused(f"{describe(node)}: operator of domain {node.domain}")
    first = states[0]
    if op in SHAPE_PASSING and isinstance(first, BatchInShape):
        only_first_batched(node, states)
        if len(graph.shape(node.output[0])) > 1:
            raise Refused(f"{describe(node)}: makes the batch size a matrix")
        return [first]
    if op in ELEMENTWISE:
        inputs = list(node.input[:1]) if op == "Dropout" else list(node.input)
        return [broadcast(graph, node, inputs, states[: len(inputs)])]
    if op == "Shape":
        return [shape_rule(graph, node, first)]
    if op in SHAPE_AWARE:
        return [SHAPE_AWARE[op](graph, node, states)]
    if any(isinstance(s, BatchInShape) for s in states):
        raise Refused(f"{describe(node)}: {op} of a shape computed from the batch")
    if op in MULTI_INPUT:
        return [MULTI_INPUT[op](graph, node, states)]
    if op == "Reshape" and states[1] is not None:
        raise Refused(f"{describe(node)}: a target computed from batched data")
    only_first_batched(node, states)
    assert isinstance(first, Batched)
    graph.shape(node.input[0])  # refused where the input's shape is not static
    if op == "Reshape":
        return reshape_options(graph, node, first)
    if op not in FIRST_INPUT:
        raise Refused(f"{describe(node)}: no rule for {op}")
    return [FIRST_INPUT[op](graph, node, first)]


def _check_outputs(graph: LayoutGraph, model: onnx.ModelProto, states: dict[str, State]) -> None:
    for value in model.graph.output:
        state = states.get(value.name)
        if state != Batched(0, 1) or graph.shape(value.name)[0] != 1:
            raise Refused(f"output {value.name} does not hold the batch as its first axis ({state})")


def locate_batch(model: onnx.ModelProto) -> tuple[dict[str, State], dict[str, list[int]]]:
    """Where the batch lies in every tensor of `model` (inputs: their first axis), with the batch-1 shapes.

    A depth-first search over the Reshapes' choices, in graph order: a refusal undoes the latest choice that still
    has alternatives (every choice is remembered with the states before it). BatchRewriteError, with the refusal
    that got furthest through the graph, when no assignment reaches the outputs."""
    try:
        graph = LayoutGraph(model)
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
        except Refused as refusal:
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
    first = graph_inputs(model)[0].name
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
    drop_unused_initializers(rewritten)
    return rewritten
