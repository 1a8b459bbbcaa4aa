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
from onnx import numpy_helper, shape_inference

BATCH_DIM = "batch"
VERIFY_TOLERANCE = 1e-5
# initializers larger than this are left out of the copy shape inference works on (their dims are enough)
SHAPE_ONLY_ELEMENTS = 1024


class BatchRewriteError(ValueError):
    """The graph cannot be given a batch axis by this rewrite (the caller serves it unbatched)."""


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    found = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = node.attribute[0].t
    return found


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every fully static shape onnx shape inference finds, shapes computed in the graph (Shape -> Concat ->
    Expand) included; it runs on a copy whose weights are bare declarations, so a large model is not copied."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.graph.node.extend(model.graph.node)
    light.graph.input.extend(model.graph.input)
    light.graph.output.extend(model.graph.output)
    declared = {i.name for i in model.graph.input}
    for initializer in model.graph.initializer:
        if int(np.prod(initializer.dims)) <= SHAPE_ONLY_ELEMENTS:
            light.graph.initializer.append(initializer)
        elif initializer.name not in declared:
            light.graph.input.append(
                onnx.helper.make_tensor_value_info(initializer.name, initializer.data_type, list(initializer.dims))
            )
    inferred = shape_inference.infer_shapes(light, data_prop=True)
    shapes = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    return shapes


def _replace_constant(model: onnx.ModelProto, name: str, array: NDArray[Any]) -> str:
    """A new initializer (constants may be shared by nodes we do not rewrite)."""
    new_name = f"{name}__batched"
    if not any(i.name == new_name for i in model.graph.initializer):
        model.graph.initializer.append(numpy_helper.from_array(array, new_name))
    return new_name


def add_batch_axis(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose inputs/outputs have a free first dim and whose batch-1 constants follow it."""
    shapes = _static_shapes(model)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    constants = _constants(rewritten)
    for node in rewritten.graph.node:
        if node.op_type == "Reshape" and node.input[1] in constants:
            target = numpy_helper.to_array(constants[node.input[1]]).copy()
            if target.size and target[0] == 1:
                target[0] = 0  # copy the batch from the input
                node.input[1] = _replace_constant(rewritten, node.input[1], target)
        elif node.op_type == "Resize" and len(node.input) == 4 and node.input[3] in constants:
            sizes = numpy_helper.to_array(constants[node.input[3]])
            source = shapes.get(node.input[0])
            if source is None or len(source) != len(sizes):
                raise BatchRewriteError(f"Resize {node.name or node.output[0]}: input shape unknown")
            scales = (sizes / np.asarray(source, dtype=np.float64)).astype(np.float32)
            node.input[2] = _replace_constant(rewritten, node.input[3] + "_scales", scales)
            node.input[3] = ""
        elif node.op_type in ("Expand", "ConstantOfShape", "Tile") and any(
            i in constants and numpy_helper.to_array(constants[i]).ndim == 1 for i in node.input[1:]
        ):
            raise BatchRewriteError(f"{node.op_type} {node.name or node.output[0]} has a constant shape")
    free_first_dims(rewritten)
    _drop_unused_initializers(rewritten)
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


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def max_batch_difference(
    original: onnx.ModelProto, batched: onnx.ModelProto, feeds: Mapping[str, NDArray[Any]]
) -> float:
    """Largest |batched - batch-1| over all outputs, for feeds whose first dim holds several items."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # fatal only: a candidate rewrite that fails to run is an expected outcome (the caller tries the next one or
    # reports the exception), not an error onnxruntime should print in red in the middle of a good export
    options.log_severity_level = 4
    single = ort.InferenceSession(original.SerializeToString(), options, providers=["CPUExecutionProvider"])
    multi = ort.InferenceSession(batched.SerializeToString(), options, providers=["CPUExecutionProvider"])
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
