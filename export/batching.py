"""Give an ONNX graph exported with a fixed batch of 1 a free batch axis, and prove it computes the same.

Exporters bake the batch of 1 into constants: `Reshape` targets like [1, -1, 4], `Resize` `sizes` like
[1, 16, 40, 40]. Run on a batch, such a graph either fails or — worse — broadcasts the first image's
features into the others. We rewrite those constants so they follow the input (Reshape 0 = "copy this dim",
Resize sizes → scales), free the first dim of inputs and outputs, and then check batched runs against
batch-1 runs of the original before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from export.onnx_graph import constants, drop_unused_initializers, session, static_shapes

BATCH_DIM = "batch"
VERIFY_TOLERANCE = 1e-5


class BatchRewriteError(ValueError):
    """The graph cannot be given a batch axis by this rewrite (the caller serves it unbatched)."""


def _replace_constant(model: onnx.ModelProto, name: str, array: NDArray[Any]) -> str:
    """A new initializer (constants may be shared by nodes we do not rewrite)."""
    new_name = f"{name}__batched"
    if not any(i.name == new_name for i in model.graph.initializer):
        model.graph.initializer.append(numpy_helper.from_array(array, new_name))
    return new_name


def batched_reshape_target(target: NDArray[Any]) -> NDArray[Any] | None:
    """A Reshape target pinned to batch 1 ([1, -1, 4]) made to copy the batch from its input ([0, -1, 4]);
    None when it does not start with 1."""
    if target.ndim != 1 or not target.size or target[0] != 1:
        return None
    batched = target.copy()
    batched[0] = 0
    return batched


def follow_batch_in_reshape(model: onnx.ModelProto, node: onnx.NodeProto, target: NDArray[Any]) -> None:
    """Point this Reshape at its own batched target (a shared constant stays as it is for its other users)."""
    node.input[1] = _replace_constant(model, node.input[1], np.asarray(target, dtype=np.int64))


def resize_by_scales(model: onnx.ModelProto, shapes: Mapping[str, list[int]]) -> None:
    """Resize nodes given constant output `sizes` [1, C, H, W] would broadcast image 0's upsampled features onto
    every image: they get the equivalent `scales` (from the batch-1 `shapes` of their inputs). Sizes computed in
    the graph follow the batch already."""
    found = constants(model.graph)
    for node in model.graph.node:
        if node.op_type != "Resize" or len(node.input) != 4 or node.input[3] not in found:
            continue
        sizes = numpy_helper.to_array(found[node.input[3]])
        source = shapes.get(node.input[0])
        if source is None or len(source) != len(sizes) or not all(source):
            raise BatchRewriteError(f"Resize {node.name or node.output[0]}: input shape unknown")
        scales = (sizes / np.asarray(source, dtype=np.float64)).astype(np.float32)
        node.input[2] = _replace_constant(model, node.input[3] + "_scales", scales)
        del node.input[3]


def add_batch_axis(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose inputs/outputs have a free first dim and whose batch-1 constants follow it."""
    shapes = static_shapes(model)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    found = constants(rewritten.graph)
    for node in rewritten.graph.node:
        if node.op_type == "Reshape" and node.input[1] in found:
            target = batched_reshape_target(numpy_helper.to_array(found[node.input[1]]))
            if target is not None:
                follow_batch_in_reshape(rewritten, node, target)
        elif node.op_type in ("Expand", "ConstantOfShape", "Tile") and any(
            i in found and numpy_helper.to_array(found[i]).ndim == 1 for i in node.input[1:]
        ):
            raise BatchRewriteError(f"{node.op_type} {node.name or node.output[0]} has a constant shape")
    resize_by_scales(rewritten, shapes)
    free_first_dims(rewritten)
    drop_unused_initializers(rewritten)
    return rewritten


def free_first_dims(model: onnx.ModelProto) -> None:
    """Inputs and outputs get a free first dim; the batch-1 shapes inferred inside are dropped."""
    initializers = {i.name for i in model.graph.initializer}
    for tensor in [*model.graph.input, *model.graph.output]:
        if tensor.name in initializers:
            continue
        dims = tensor.type.tensor_type.shape.dim
        if not dims:
            raise BatchRewriteError(f"{tensor.name} has no shape")
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM
    del model.graph.value_info[:]


def max_batch_difference(
    original: onnx.ModelProto, batched: onnx.ModelProto, feeds: Mapping[str, NDArray[Any]]
) -> float:
    """Largest |batched - batch-1| over all outputs, for feeds whose first dim holds several items."""
    # fatal only: a candidate rewrite that fails to run is an expected outcome (the caller tries the next one or
    # reports the exception), not an error onnxruntime should print in red in the middle of a good export
    single, multi = session(original, log_level=4), session(batched, log_level=4)
    together = multi.run(None, dict(feeds))
    count = next(iter(feeds.values())).shape[0]
    worst = 0.0
    for index in range(count):
        alone = single.run(None, {k: v[index : index + 1] for k, v in feeds.items()})
        for one, many in zip(alone, together):
            if many.shape[1:] != one.shape[1:] or many.shape[0] != count:
                return float("inf")
            worst = max(worst, float(np.abs(many[index : index + 1].astype(np.float64) - one).max()))
    return worst


def batchable(
    model: onnx.ModelProto,
    feeds: Mapping[str, NDArray[Any]],
    tolerance: float = VERIFY_TOLERANCE,
    rewrite: Callable[[onnx.ModelProto], onnx.ModelProto] = add_batch_axis,
) -> tuple[onnx.ModelProto, float]:
    """The model rewritten by `rewrite` (the constant rewrite, or export/batch_layout.py's) and its verified
    difference; BatchRewriteError when it does not hold."""
    batched = rewrite(model)
    try:
        difference = max_batch_difference(model, batched, feeds)
    except Exception as error:  # onnxruntime rejects the rewritten graph
        raise BatchRewriteError(f"the batched graph does not run: {type(error).__name__}: {error}") from error
    if not difference <= tolerance:
        raise BatchRewriteError(f"batched outputs differ from batch-1 runs by {difference:.3g} (> {tolerance})")
    return batched, difference
