"""The face pack's graphs read once: which SCRFD output is which map, ArcFace's normalisation, and a verified
batch axis for both (insightface guesses these at run time; export writes them down)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.batching import (
    BATCH_DIM, BatchRewriteError, batched_reshape_target, follow_batch_in_reshape, resize_by_scales,
)
from export.common import ExportError
from export.onnx_graph import (
    constant_value, drop_unused_initializers, rename_tensors, session, set_shape, static_shapes,
)

# The reference's detection contract (immich/insightface): a 640x640 letterbox; aligned crops of 112x112.
DETECTOR_INPUT_SIZE = 640
ALIGNED_SIZE = 112
# insightface model_zoo/scrfd.py: the output count tells strides, anchors per position and keypoints
SCRFD_LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
MAP_WIDTHS = {1: "score", 4: "bbox", 10: "kps"}
# batched vs batch-1 runs of the same file must agree this closely (float32 reassociation only)
BATCH_CHECK_ATOL = 1e-4
NCHW_TO_NHWC = [0, 2, 3, 1]
# files exported without a batch axis move it among the spatial axes (N,C,H,W → H,W,N,C) before flattening;
# with N = 1 both orders hold the same bytes, with N > 1 only batch-first keeps images apart
NCHW_TO_HWNC = [2, 3, 0, 1]


@dataclass(frozen=True)
class DetectorInfo:
    strides: tuple[int, ...]
    anchors: int
    source_outputs: dict[str, str]  # our name (score_8, ...) → the file's output name
    source_input: str


@dataclass(frozen=True)
class RecognizerInfo:
    mean: float
    std: float
    embedding_size: int
    source_input: str
    source_output: str


def _reshape_producing(graph: Any, tensor: str) -> Any:
    """The Reshape a detector output comes from (through element-wise ops such as its Sigmoid)."""
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(tensor)
    while node is not None and node.op_type != "Reshape":
        if len(node.input) != 1:
            break
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Reshape":
        raise ExportError(f"detector output {tensor} does not come from a Reshape: cannot give it a batch axis")
    return node


def _map_target(shape: Any) -> Any:
    """The Reshape target of an output map with the batch copied (0) from its input: [1, -1, C] → [0, -1, C]
    (export/batching.py's rule), [0, -1, C] as it is, and [-1, C] (files without a batch axis) → [0, -1, C]."""
    import numpy as np

    values = np.asarray(shape, dtype=np.int64)
    if values.shape == (2,) and values[0] == -1:
        return np.array([0, -1, values[1]], np.int64)
    if values.shape != (3,):
        return None
    return values if values[0] == 0 else batched_reshape_target(values)


def _batch_first_transpose(graph: Any, reshape: Any, path: Path) -> None:
    producers = {out: node for node in graph.node for out in node.output}
    transpose = producers.get(reshape.input[0])
    if transpose is None or transpose.op_type != "Transpose":
        raise ExportError(f"{path}: Reshape {reshape.name} does not follow a Transpose; cannot batch it")
    perm = next(a for a in transpose.attribute if a.name == "perm")
    if list(perm.ints) == NCHW_TO_HWNC:
        perm.ints[:] = NCHW_TO_NHWC
    elif list(perm.ints) != NCHW_TO_NHWC:
        raise ExportError(f"{path}: Transpose {transpose.name} {list(perm.ints)} before a map is not understood")


def inspect_detector(path: Path) -> DetectorInfo:
    """Which output is which map, from the output count (insightface's rule) and the shapes of one run."""
    import numpy as np

    loaded = session(path)
    inputs, outputs = loaded.get_inputs(), loaded.get_outputs()
    if len(inputs) != 1:
        raise ExportError(f"{path}: a SCRFD detector has one input, this one has {len(inputs)}")
    layout = SCRFD_LAYOUTS.get(len(outputs))
    if layout is None:
        raise ExportError(
            f"{path}: {len(outputs)} outputs; a SCRFD detector with keypoints has 9 or 15 (landmarks are needed "
            "to align faces)"
        )
    strides, anchors = layout
    size = DETECTOR_INPUT_SIZE
    fixed = [d for d in inputs[0].shape[2:] if isinstance(d, int)]
    if any(d != size for d in fixed):
        raise ExportError(f"{path}: fixed input {inputs[0].shape}, the pipeline needs {size}x{size}")
    results = loaded.run(None, {inputs[0].name: np.zeros((1, 3, size, size), np.float32)})
    mapping: dict[str, str] = {}
    for meta, array in zip(outputs, results):
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        kind = MAP_WIDTHS.get(array.shape[-1]) if array.ndim == 2 else None
        cells = array.shape[0] // anchors if kind else 0
        stride = next((s for s in strides if (size // s) ** 2 == cells), None)
        if kind is None or stride is None:
            raise ExportError(f"{path}: output {meta.name} {list(array.shape)} is no SCRFD map of a known stride")
        name = f"{kind}_{stride}"
        if name in mapping:
            raise ExportError(f"{path}: outputs {mapping[name]} and {meta.name} are both {name}")
        mapping[name] = meta.name
    return DetectorInfo(tuple(strides), anchors, mapping, inputs[0].name)


def batch_detector(path: Path, info: DetectorInfo) -> Any:
    """The detector graph with a dynamic batch axis and named tensors (an onnx ModelProto)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    size = DETECTOR_INPUT_SIZE
    sized = any(n.op_type == "Resize" and len(n.input) == 4 for n in graph.node)
    shapes = static_shapes(model, {info.source_input: [1, 3, size, size]}) if sized else {}
    for tensor in info.source_outputs.values():
        reshape = _reshape_producing(graph, tensor)
        current = constant_value(graph, reshape.input[1])
        target = _map_target(current) if current is not None else None
        if target is None:
            raise ExportError(f"{path}: Reshape {reshape.name} to {current} cannot be given a batch axis")
        follow_batch_in_reshape(model, reshape, target)
        _batch_first_transpose(graph, reshape, path)
    try:
        resize_by_scales(model, shapes)
    except BatchRewriteError as error:
        raise ExportError(f"{path}: {error}") from error
    renames = {old: new for new, old in info.source_outputs.items()}
    renames[info.source_input] = "image"
    rename_tensors(graph, renames)
    del graph.value_info[:]  # shapes inferred for batch 1 would now be wrong
    set_shape(graph.input[0], [BATCH_DIM, 3, size, size])
    for output in graph.output:
        kind, stride = output.name.split("_")
        width = next(w for w, k in MAP_WIDTHS.items() if k == kind)
        set_shape(output, [BATCH_DIM, (size // int(stride)) ** 2 * info.anchors, width])
    onnx.checker.check_model(model)
    return model


def check_detector_batch(original: Path, batched: Any, info: DetectorInfo) -> float:
    """Largest difference between one batch-2 run of the new graph and batch-1 runs of the original."""
    import numpy as np

    rng = np.random.default_rng(0)
    size = DETECTOR_INPUT_SIZE
    images = rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    old, new = session(original), session(batched)
    names = list(info.source_outputs)
    together = dict(zip(names, new.run(names, {"image": images})))
    worst = 0.0
    for index in range(2):
        single = old.run(list(info.source_outputs.values()), {info.source_input: images[index : index + 1]})
        for name, array in zip(names, single):
            reference = array[0] if array.ndim == 3 else array
            worst = max(worst, float(np.abs(together[name][index] - reference).max()))
    if worst > BATCH_CHECK_ATOL:
        raise ExportError(f"{original}: the batched detector differs from batch-1 runs by {worst:g}")
    return worst


def inspect_recognizer(path: Path) -> RecognizerInfo:
    import numpy as np
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    # insightface model_zoo/arcface_onnx.py: a graph whose first nodes subtract and multiply normalises itself
    first = [node.name for node in model.graph.node[:8]]
    normalises = any(n.startswith(("Sub", "_minus")) for n in first) and any(
        n.startswith(("Mul", "_mul")) for n in first
    )
    mean, std = (0.0, 1.0) if normalises else (127.5, 127.5)
    loaded = session(path)
    inputs, outputs = loaded.get_inputs(), loaded.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"{path}: an ArcFace recogniser has one input and one output")
    if [d for d in inputs[0].shape[1:]] != [3, ALIGNED_SIZE, ALIGNED_SIZE]:
        raise ExportError(f"{path}: input {inputs[0].shape}, expected [N,3,{ALIGNED_SIZE},{ALIGNED_SIZE}]")
    probe = np.zeros((1, 3, ALIGNED_SIZE, ALIGNED_SIZE), np.float32)
    embedding = loaded.run(None, {inputs[0].name: probe})[0]
    if embedding.ndim != 2 or embedding.shape[0] != 1:
        raise ExportError(f"{path}: output {list(embedding.shape)}, expected [N,D]")
    return RecognizerInfo(mean, std, int(embedding.shape[1]), inputs[0].name, outputs[0].name)


def batch_recognizer(path: Path, info: RecognizerInfo) -> Any:
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        current = constant_value(graph, node.input[1]) if node.op_type == "Reshape" else None
        target = batched_reshape_target(current) if current is not None and len(current) >= 2 else None
        if target is not None:
            follow_batch_in_reshape(model, node, target)
    rename_tensors(graph, {info.source_input: "image", info.source_output: "embedding"})
    del graph.value_info[:]
    set_shape(graph.input[0], [BATCH_DIM, 3, ALIGNED_SIZE, ALIGNED_SIZE])
    set_shape(graph.output[0], [BATCH_DIM, info.embedding_size])
    drop_unused_initializers(model)
    onnx.checker.check_model(model)
    return model


def check_recognizer_batch(original: Path, batched: Any, info: RecognizerInfo) -> float:
    import numpy as np

    rng = np.random.default_rng(1)
    crops = rng.uniform(-1, 1, (3, 3, ALIGNED_SIZE, ALIGNED_SIZE)).astype(np.float32)
    together = session(batched).run(["embedding"], {"image": crops})[0]
    old = session(original)
    single = np.concatenate([old.run(None, {info.source_input: crops[i : i + 1]})[0] for i in range(3)])
    worst = float(np.abs(together - single).max() / max(1e-12, float(np.abs(single).max())))
    if worst > BATCH_CHECK_ATOL:
        raise ExportError(f"{original}: the batched recogniser differs from batch-1 runs by {worst:g} (relative)")
    return worst
