"""The CLIP encoders' graphs: tensors named by meaning, and a batch axis by the first way that holds.

immich's ONNX files have a static batch of 1. Each encoder gets a batch axis: its batch-1 constants rewritten
(export/batching.py), else its Reshape targets freed where the trace folded the batch (export/batch_layout.py),
else a Scan over items; each way is proven on several items against batch-1 runs of the shipped graph, and when
none holds the encoder is served with a batch of at most 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from export.common import ExportError
from export.onnx_graph import constants as graph_constants
from export.onnx_graph import drop_unused_initializers, graph_inputs, opset, rename_tensors, session, static_dims

REASON_CHARS = 160
SINGLE_TEXT_INPUTS = ("text",)
MCLIP_INPUTS = ("input_ids", "attention_mask")


def name_visual_tensors(model: Any) -> None:
    """One input `image`, one output `embedding` (immich's names; other exports are renamed to them)."""
    inputs, outputs = graph_inputs(model), list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"visual model: expected 1 input and 1 output, found {len(inputs)} and {len(outputs)}")
    rename_tensors(model.graph, {inputs[0].name: "image", outputs[0].name: "embedding"})


def name_textual_tensors(model: Any) -> tuple[str, ...]:
    """`text`, or M-CLIP's `input_ids` + `attention_mask`; the output `embedding`."""
    inputs, outputs = graph_inputs(model), list(model.graph.output)
    if len(outputs) != 1:
        raise ExportError(f"textual model: expected 1 output, found {len(outputs)}")
    rename_tensors(model.graph, {outputs[0].name: "embedding"})
    names = tuple(i.name for i in inputs)
    if len(inputs) == 1:
        rename_tensors(model.graph, {names[0]: "text"})
        return SINGLE_TEXT_INPUTS
    if sorted(names) == sorted(MCLIP_INPUTS):
        return MCLIP_INPUTS
    raise ExportError(f"textual model: inputs {names} are neither `text` nor `input_ids` + `attention_mask`")


def follow_batch_in_expands(model: Any) -> int:
    """Expand targets like [1, 1, width] (open_clip's class token `expand(batch, 1, -1)`, traced with the
    batch frozen to 1) take their first dim from the input's batch; returns how many were rewritten.

    Only Expands whose result is concatenated with batch data need it (broadcasting handles the rest), and
    only those are touched; export/batching.py (or export/batch_layout.py) then handles the Reshape targets.
    """
    from onnx import helper, numpy_helper

    constants = {name: numpy_helper.to_array(tensor) for name, tensor in graph_constants(model.graph).items()}
    concatenated = {name for node in model.graph.node if node.op_type == "Concat" for name in node.input}
    batch = "batch_size__from_input"
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "Expand" or node.output[0] not in concatenated or node.input[1] not in constants:
            continue
        target = constants[node.input[1]]
        if target.ndim != 1 or target.size == 0 or target[0] != 1:
            continue
        rest = f"{node.output[0]}__shape_rest"
        model.graph.initializer.append(numpy_helper.from_array(target[1:].astype(np.int64), rest))
        shape = f"{node.output[0]}__shape"
        model.graph.node.insert(0, helper.make_node("Concat", [batch, rest], [shape], axis=0))
        node.input[1] = shape
        rewritten += 1
    if rewritten:
        first = graph_inputs(model)[0].name
        index = f"{batch}__index"
        model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), index))
        model.graph.node.insert(0, helper.make_node("Gather", [f"{batch}__shape", index], [batch], axis=0))
        model.graph.node.insert(0, helper.make_node("Shape", [first], [f"{batch}__shape"]))
    return rewritten


SCAN_MIN_OPSET = 13  # Unsqueeze/Squeeze take their axes as an input from opset 13 on


def wrap_in_scan(model: Any) -> Any:
    """The batch-1 graph as the body of a Scan over the batch: any batch in, each item run exactly as the
    shipped file runs it (no batched maths, but one encoder call per Triton batch). For graphs that fold the
    batch into other axes (torch's `nn.MultiheadAttention` traces reshape to [seq, batch*heads, head_dim]),
    where rewriting the constants cannot work."""
    import onnx
    from onnx import helper, numpy_helper

    if opset(model) < SCAN_MIN_OPSET:
        raise ValueError(f"opset {opset(model)} < {SCAN_MIN_OPSET}")
    inputs, outputs = graph_inputs(model), list(model.graph.output)
    axes = "scan__axes0"
    renames = {v.name: f"{v.name}__one" for v in [*inputs, *outputs]}
    body_nodes, body_inputs, body_outputs = [], [], []
    for value in inputs:
        body_inputs.append(helper.make_tensor_value_info(
            f"{value.name}__item", value.type.tensor_type.elem_type, static_dims(value)[1:]))
        body_nodes.append(helper.make_node("Unsqueeze", [f"{value.name}__item", axes], [renames[value.name]]))
    for node in model.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [renames.get(n, n) for n in node.input]
        copy.output[:] = [renames.get(n, n) for n in node.output]
        body_nodes.append(copy)
    for value in outputs:
        body_nodes.append(helper.make_node("Squeeze", [renames[value.name], axes], [f"{value.name}__item"]))
        body_outputs.append(helper.make_tensor_value_info(
            f"{value.name}__item", value.type.tensor_type.elem_type, static_dims(value)[1:]))
    body = helper.make_graph(body_nodes, "per_item", body_inputs, body_outputs)
    scan = helper.make_node("Scan", [v.name for v in inputs], [v.name for v in outputs], body=body,
                            num_scan_inputs=len(inputs))
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    del wrapped.graph.node[:]
    del wrapped.graph.value_info[:]
    wrapped.graph.node.append(scan)
    wrapped.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), axes))
    for value in [*graph_inputs(wrapped), *wrapped.graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_param = "batch"
    return wrapped


def make_batchable(model: Any, feeds: dict[str, NDArray[Any]], what: str) -> tuple[Any | None, str]:
    """The model with a free batch axis and a line saying how, or None when nothing holds.

    True batched maths first: the constant rewrite (batch-first graphs), then the layout rewrite (graphs that
    fold the batch into other axes, as torch's `nn.MultiheadAttention` traces); when neither's batched outputs
    equal batch-1 runs, the Scan wrap (exact per item, but items one after another). Each is proven on `feeds`
    (several items) against the shipped graph.
    """
    from export.batch_layout import free_folded_batch
    from export.batching import VERIFY_TOLERANCE, add_batch_axis, batchable, max_batch_difference

    # in place (no copy of a model that may weigh a gigabyte): at batch 1 the rewritten Expands compute
    # exactly what the constants said, so `model` stays the shipped graph's equal
    follow_batch_in_expands(model)
    failures = []
    for rewrite, how in ((add_batch_axis, "constants follow the batch"),
                         (free_folded_batch, "Reshape targets follow the batch through its folded layout")):
        try:
            batched, difference = batchable(model, feeds, rewrite=rewrite)
        except Exception as error:  # noqa: BLE001 - BatchRewriteError, or shape inference failing on the graph
            failures.append(_reason(error))
            continue
        drop_unused_initializers(batched)
        return batched, f"{what}: batch axis added ({how}), batched vs batch-1 max abs diff {difference:.3g}"
    rewrite_failure = f"{failures[0]}; layout: {failures[1]}"
    try:
        wrapped = wrap_in_scan(model)
        difference = max_batch_difference(model, wrapped, feeds)
        if not difference <= VERIFY_TOLERANCE:
            raise ValueError(f"batched outputs differ from batch-1 runs by {difference:.3g}")
    except Exception as error:  # noqa: BLE001 - the wrap is refused or does not run
        return None, f"{what}: no batch axis ({rewrite_failure}; scan: {_reason(error)}); served with a batch of 1"
    return wrapped, (f"{what}: constants pin the batch ({rewrite_failure}); batch axis by a Scan over items, "
                     f"batched vs batch-1 max abs diff {difference:.3g}")


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:REASON_CHARS] if text else type(error).__name__


def output_dim(model: Any, feeds: dict[str, NDArray[Any]]) -> int:
    """The embedding size from the graph (run once when the graph does not state it)."""
    dims = static_dims(next(o for o in model.graph.output if o.name == "embedding"))
    if dims and dims[-1] > 0:
        return dims[-1]
    return int(session(model).run(["embedding"], {k: v[:1] for k, v in feeds.items()})[0].shape[-1])
