"""ONNX graph helpers every family's export uses: renaming tensors, finding constants, shapes, pruning, saving,
and a quiet onnxruntime session to run a graph once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper, shape_inference

# protobuf cannot serialise a message over 2 GB: larger graphs keep their weights beside them
PROTOBUF_LIMIT = 2**31 - 1
ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
# initializers larger than this are left out of the copy shape inference works on (their dims are enough)
SHAPE_ONLY_ELEMENTS = 1024


def rename_tensors(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Rename graph inputs, outputs and node connections; through unique temporaries, so that swapped or
    overlapping names cannot collide."""
    renames = {old: new for old, new in renames.items() if old != new}
    temporary = {old: f"__mtpt_rename_{index}" for index, old in enumerate(renames)}
    for step in (temporary, {temporary[old]: new for old, new in renames.items()}):
        for node in graph.node:
            node.input[:] = [step.get(name, name) for name in node.input]
            node.output[:] = [step.get(name, name) for name in node.output]
        for value in (*graph.input, *graph.output):
            value.name = step.get(value.name, value.name)


def constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Every tensor known before the graph runs: initializers and Constant nodes' values."""
    found = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = node.attribute[0].t
    return found


def constant_value(graph: onnx.GraphProto, name: str) -> NDArray[Any] | None:
    tensor = constants(graph).get(name)
    return None if tensor is None else numpy_helper.to_array(tensor)


def opset(model: onnx.ModelProto) -> int:
    """The version of the default operator set the graph is written in."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds (older exporters list the initializers among the inputs too)."""
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def static_dims(value: onnx.ValueInfoProto) -> list[int]:
    """The dims of a tensor, -1 where not fixed."""
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def set_shape(value: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    """Numbers are fixed dims, strings named dynamic ones."""
    shape = value.type.tensor_type.shape
    shape.ClearField("dim")
    for dim in dims:
        entry = shape.dim.add()
        if isinstance(dim, str):
            entry.dim_param = dim
        else:
            entry.dim_value = dim


def static_shapes(model: onnx.ModelProto, inputs: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Every fully static shape onnx shape inference finds (with `inputs` given these shapes), shapes computed in
    the graph (Shape -> Concat -> Expand) included; it runs on a copy whose weights are bare declarations, so a
    large model is not copied."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.graph.node.extend(model.graph.node)
    light.graph.input.extend(model.graph.input)
    light.graph.output.extend(model.graph.output)
    for value in light.graph.input:
        if inputs and value.name in inputs:
            set_shape(value, list(inputs[value.name]))
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


def _referenced(graph: onnx.GraphProto) -> set[str]:
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs] if attribute.HasField("g") or attribute.graphs else []:
                names |= _referenced(subgraph)
    return names


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Constants a rewrite replaced (onnxruntime warns about each one left behind); subgraphs' uses count."""
    used = _referenced(model.graph)
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def load(path: Path) -> onnx.ModelProto:
    from export.common import ExportError

    if not path.is_file():
        raise ExportError(f"{path} is missing")
    return onnx.load(str(path))


def onnx_files(model_file: Path) -> list[Path]:
    """The graph and its external-data files."""
    return [p for p in sorted(model_file.parent.iterdir()) if p.name.startswith(model_file.name)]


def save(model: onnx.ModelProto, version_dir: Path) -> Path:
    """`<version_dir>/model.onnx` (earlier files of it removed), its weights in model.onnx.data when the graph is
    over protobuf's 2 GB limit."""
    version_dir.mkdir(parents=True, exist_ok=True)
    for old in version_dir.glob(f"{ONNX_FILE}*"):
        old.unlink()
    target = version_dir / ONNX_FILE
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save(model, str(target))
    else:
        onnx.save(model, str(target), save_as_external_data=True, location=EXTERNAL_DATA_FILE)
    return target


def session(model_or_path: onnx.ModelProto | Path | str, log_level: int = 3) -> Any:
    """An onnxruntime CPU session on a graph or file; warnings are not printed (3: errors only; 4: fatal only,
    for candidate rewrites that are expected to fail)."""
    import onnxruntime as ort

    source = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    options = ort.SessionOptions()
    options.log_severity_level = log_level
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
