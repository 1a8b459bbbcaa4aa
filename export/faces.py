"""`mt-photos-triton export faces`: an InsightFace pack (SCRFD detector + ArcFace recogniser) into Triton models.

Sources: Hugging Face `immich-app/<pack>` (HF_ENDPOINT for a mirror), or `--from` a local directory, a zip, or
a URL of a zip laid out as `detection/model.onnx` + `recognition/model.onnx`.

Each file is read once and its contract written down, so nothing is guessed at serve time:
- detector: which output is the score / box / keypoint map of which stride (found from the output shapes of
  one run, whatever the names, order or batch axes), renamed `score_<s>`, `bbox_<s>`, `kps_<s>`; input renamed
  `image`; a dynamic batch axis added (the Reshape shape constants that pin batch 1, or that drop the batch,
  now copy it), checked against batch-1 runs of the original file;
- recogniser: mean/std decided as insightface's ArcFaceONNX decides them (first graph nodes Sub and Mul →
  the graph normalises: 0/1; else 127.5/127.5), embedding size, a dynamic batch axis (checked likewise),
  tensors renamed `image` → `embedding`.
The weights are licensed by InsightFace for non-commercial research only: downloaded here, never committed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from export.common import (
    ExportError,
    ExportResult,
    code_fingerprint,
    download_hf_snapshot,
    sha256_file,
    unpack_local,
    verify_sha256,
)

log = logging.getLogger(__name__)

FAMILY = "faces"
DEFAULT_PACK = "buffalo_l"
DETECTION_FILE = "detection/model.onnx"
RECOGNITION_FILE = "recognition/model.onnx"
HF_ORGANISATION = "immich-app"

DETECTOR_MODEL = "face_det"
RECOGNIZER_MODEL = "face_rec"
ENTRY_MODEL = "faces"
RECORD_FILE = "export.json"  # in the `faces` model directory (git-ignored)

# The reference's detection contract (immich/insightface): a 640x640 letterbox, RGB (x - 127.5) / 128,
# greedy NMS at IoU 0.4. The SCRFD files carry no metadata for these: they are insightface's constants.
DETECTOR_INPUT_SIZE = 640
DETECTOR_MEAN = 127.5
DETECTOR_STD = 128.0
NMS_IOU_THRESHOLD = 0.4
ALIGNED_SIZE = 112
# how many images one detector run and faces one recogniser run may take (Triton max_batch_size)
DETECTOR_MAX_BATCH = 8
RECOGNIZER_MAX_BATCH = 64
ENTRY_MAX_BATCH = 8
ENTRY_QUEUE_DELAY_US = 500
# instances per model: two let one image's recognition overlap the next one's detection (and two executes of
# the same model run side by side on multi-core CPUs); Triton places them on each GPU when there is one
MODEL_INSTANCES = 2
# two onnxruntime threads per instance: with idle pool threads not spinning (the embedded backend's default)
# one request uses both cores and concurrent ones share them; `bench faces` on 2 quiet cores went from
# 0.68/0.92x (1 face) and 0.55/1.05x (6 faces) at concurrency 1/4 with one thread to 0.92/0.95x and 1.10/1.12x
INTRA_OP_THREADS = 2
# `faces` instances: more than the ONNX ones, so that while some decode, letterbox and align (python, one
# core each) others keep the detector and recogniser busy (bench faces, 1-face photo at concurrency 4: +8 %)
ENTRY_INSTANCES = 4
# insightface model_zoo/scrfd.py: the output count tells strides, anchors per position and keypoints
SCRFD_LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
MAP_WIDTHS = {1: "score", 4: "bbox", 10: "kps"}
# batched vs batch-1 runs of the same file must agree this closely (float32 reassociation only)
BATCH_CHECK_ATOL = 1e-4
SELF_CHECK_BOX_PX = 0.5
SELF_CHECK_SCORE = 1e-4
SELF_CHECK_COSINE = 0.9999
SELF_CHECK_MIN_SCORE = 0.5


@dataclass(frozen=True)
class Pack:
    revision: str
    sha256: dict[str, str] = field(default_factory=dict)  # pinned file hashes, where known


# Revisions: buffalo_l is pinned to a commit of immich-app/buffalo_l that carries the ONNX files; for the other
# packs no full commit id was known when this was written, so they follow `main` and the sha256 of what was
# downloaded is recorded in export.json at the first export (and checked on every later one).
PACKS = {
    "buffalo_l": Pack("dfb33f6afae127d24d7adc5e7c75fa4a79dca31b"),
    "buffalo_m": Pack("main"),
    "buffalo_s": Pack("main", {DETECTION_FILE: "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a"}),
    "antelopev2": Pack("main"),
}


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


# --- sources ----------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mt-photos-triton" / FAMILY


def download_url(url: str, target: Path) -> Path:
    """A zip over HTTP(S) with a progress bar."""
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as error:
        raise ExportError(
            f"could not download {url} ({type(error).__name__}); download it yourself and pass --from FILE"
        ) from error
    partial.replace(target)
    return target


def fetch(pack: str, source: str | None, work: Path) -> tuple[Path, str]:
    """The folder holding detection/ and recognition/, and a description of where it came from."""
    if source is None:
        if pack not in PACKS:
            raise ExportError(f"unknown face pack '{pack}' (known: {', '.join(PACKS)}); use --from DIR_OR_ZIP")
        revision = PACKS[pack].revision
        folder = download_hf_snapshot(
            f"{HF_ORGANISATION}/{pack}", revision, [DETECTION_FILE, RECOGNITION_FILE], cache_dir() / pack
        )
        return folder, f"huggingface:{HF_ORGANISATION}/{pack}@{revision}"
    if source.startswith(("http://", "https://")):
        archive = download_url(source, work / "download.zip")
        return unpack_local(archive, work), source
    path = Path(source).expanduser()
    if not path.exists():
        raise ExportError(f"--from {source}: no such file or directory")
    return unpack_local(path, work), str(path.resolve())


def source_files(folder: Path) -> tuple[Path, Path]:
    detection, recognition = folder / DETECTION_FILE, folder / RECOGNITION_FILE
    for path in (detection, recognition):
        if not path.is_file():
            raise ExportError(f"{path} is missing: a face pack holds {DETECTION_FILE} and {RECOGNITION_FILE}")
    return detection, recognition


# --- graph surgery ----------------------------------------------------------------------------------------


def _rename_tensor(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in [*graph.input, *graph.output]:
        if value.name == old:
            value.name = new


def _rename_all(graph: Any, renames: dict[str, str]) -> None:
    """Rename through unique temporaries so that swapped or overlapping names cannot collide."""
    temporary = {old: f"__mtpt_rename_{index}" for index, old in enumerate(renames)}
    for old, tmp in temporary.items():
        _rename_tensor(graph, old, tmp)
    for old, tmp in temporary.items():
        _rename_tensor(graph, tmp, renames[old])


def _set_shape(value: Any, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    shape.ClearField("dim")
    for dim in dims:
        entry = shape.dim.add()
        if isinstance(dim, str):
            entry.dim_param = dim
        else:
            entry.dim_value = dim


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


def _batched_shape(shape: Any) -> list[int] | None:
    """The Reshape target with the batch copied (0) from its input: [-1, C] → [0, -1, C], [1, -1, C] → [0, -1, C]."""
    values = [int(v) for v in shape]
    if len(values) == 2 and values[0] == -1:
        return [0, -1, values[1]]
    if len(values) == 3 and values[0] == 1:
        return [0, *values[1:]]
    if len(values) == 3 and values[0] == 0:
        return values
    return None


NCHW_TO_NHWC = [0, 2, 3, 1]
# files exported without a batch axis move it among the spatial axes (N,C,H,W → H,W,N,C) before flattening;
# with N = 1 both orders hold the same bytes, with N > 1 only batch-first keeps images apart
NCHW_TO_HWNC = [2, 3, 0, 1]


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


def _resize_by_scales(model: Any, info: DetectorInfo) -> None:
    """Resize nodes given constant output `sizes` [1, C, H, W] (files exported at a fixed 640 with batch 1)
    would broadcast image 0's upsampled features onto every image: give them the equivalent `scales`."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    resizes = [n for n in graph.node if n.op_type == "Resize" and len(n.input) == 4 and n.input[3]]
    if not resizes:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    size = DETECTOR_INPUT_SIZE
    _set_shape(next(i for i in probe.graph.input if i.name == info.source_input), [1, 3, size, size])
    inferred = onnx.shape_inference.infer_shapes(probe)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.input]
    }
    for node in resizes:
        sizes = _constant_value(graph, node.input[3])
        if sizes is None:
            continue  # computed from the input's shape: it follows the batch already
        source = shapes.get(node.input[0], [])
        if len(source) != len(sizes) or not all(source):
            raise ExportError(f"Resize {node.name}: output sizes are not a constant over a known shape")
        scales = (np.asarray(sizes, np.float64) / np.asarray(source, np.float64)).astype(np.float32)
        name = f"{node.name or node.output[0]}__scales"
        graph.initializer.append(numpy_helper.from_array(scales, name))
        del node.input[3]
        node.input[2] = name


def _constant_value(graph: Any, name: str) -> Any:
    from onnx import numpy_helper

    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _point_reshape_to(graph: Any, node: Any, shape: list[int]) -> None:
    """Give this Reshape its own shape initializer (shared ones stay as they are for other users)."""
    import numpy as np
    from onnx import numpy_helper

    name = f"{node.name or node.output[0]}__batched_shape"
    graph.initializer.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), name))
    node.input[1] = name


def _session(model_or_path: Any) -> Any:
    import onnxruntime as ort

    source = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def inspect_detector(path: Path) -> DetectorInfo:
    """Which output is which map, from the output count (insightface's rule) and the shapes of one run."""
    import numpy as np

    session = _session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
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
    results = session.run(None, {inputs[0].name: np.zeros((1, 3, size, size), np.float32)})
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
    for tensor in info.source_outputs.values():
        reshape = _reshape_producing(graph, tensor)
        current = _constant_value(graph, reshape.input[1])
        target = _batched_shape(current) if current is not None else None
        if target is None:
            raise ExportError(f"{path}: Reshape {reshape.name} to {current} cannot be given a batch axis")
        _point_reshape_to(graph, reshape, target)
        _batch_first_transpose(graph, reshape, path)
    _resize_by_scales(model, info)
    renames = {old: new for new, old in info.source_outputs.items()}
    renames[info.source_input] = "image"
    _rename_all(graph, renames)
    del graph.value_info[:]  # shapes inferred for batch 1 would now be wrong
    size = DETECTOR_INPUT_SIZE
    _set_shape(graph.input[0], ["batch", 3, size, size])
    for output in graph.output:
        kind, stride = output.name.split("_")
        width = next(w for w, k in MAP_WIDTHS.items() if k == kind)
        _set_shape(output, ["batch", (size // int(stride)) ** 2 * info.anchors, width])
    onnx.checker.check_model(model)
    return model


def check_detector_batch(original: Path, batched: Any, info: DetectorInfo) -> float:
    """Largest difference between one batch-2 run of the new graph and batch-1 runs of the original."""
    import numpy as np

    rng = np.random.default_rng(0)
    size = DETECTOR_INPUT_SIZE
    images = rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    old, new = _session(original), _session(batched)
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
    session = _session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"{path}: an ArcFace recogniser has one input and one output")
    if [d for d in inputs[0].shape[1:]] != [3, ALIGNED_SIZE, ALIGNED_SIZE]:
        raise ExportError(f"{path}: input {inputs[0].shape}, expected [N,3,{ALIGNED_SIZE},{ALIGNED_SIZE}]")
    probe = np.zeros((1, 3, ALIGNED_SIZE, ALIGNED_SIZE), np.float32)
    embedding = session.run(None, {inputs[0].name: probe})[0]
    if embedding.ndim != 2 or embedding.shape[0] != 1:
        raise ExportError(f"{path}: output {list(embedding.shape)}, expected [N,D]")
    return RecognizerInfo(mean, std, int(embedding.shape[1]), inputs[0].name, outputs[0].name)


def batch_recognizer(path: Path, info: RecognizerInfo) -> Any:
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        if node.op_type == "Reshape":
            current = _constant_value(graph, node.input[1])
            if current is not None and current.ndim == 1 and len(current) >= 2 and int(current[0]) == 1:
                _point_reshape_to(graph, node, [0, *(int(v) for v in current[1:])])
    _rename_all(graph, {info.source_input: "image", info.source_output: "embedding"})
    del graph.value_info[:]
    _set_shape(graph.input[0], ["batch", 3, ALIGNED_SIZE, ALIGNED_SIZE])
    _set_shape(graph.output[0], ["batch", info.embedding_size])
    onnx.checker.check_model(model)
    return model


def check_recognizer_batch(original: Path, batched: Any, info: RecognizerInfo) -> float:
    import numpy as np

    rng = np.random.default_rng(1)
    crops = rng.uniform(-1, 1, (3, 3, ALIGNED_SIZE, ALIGNED_SIZE)).astype(np.float32)
    together = _session(batched).run(["embedding"], {"image": crops})[0]
    old = _session(original)
    single = np.concatenate([old.run(None, {info.source_input: crops[i : i + 1]})[0] for i in range(3)])
    worst = float(np.abs(together - single).max() / max(1e-12, float(np.abs(single).max())))
    if worst > BATCH_CHECK_ATOL:
        raise ExportError(f"{original}: the batched recogniser differs from batch-1 runs by {worst:g} (relative)")
    return worst


# --- configs ----------------------------------------------------------------------------------------------


def detector_config(info: DetectorInfo) -> Any:
    from tritonclient.grpc import model_config_pb2 as pb

    from mt_photos_triton.repository import FAMILY_PARAMETER, ModelConfig

    from export.configs import set_parameters

    config = ModelConfig(name=DETECTOR_MODEL, backend="onnxruntime", max_batch_size=DETECTOR_MAX_BATCH)
    config.dynamic_batching.SetInParent()
    config.instance_group.add(count=MODEL_INSTANCES)
    size = DETECTOR_INPUT_SIZE
    config.input.add(name="image", data_type=pb.TYPE_FP32, dims=[3, size, size])
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride in info.strides:
            rows = (size // stride) ** 2 * info.anchors
            config.output.add(name=f"{kind}_{stride}", data_type=pb.TYPE_FP32, dims=[rows, width])
    set_parameters(
        config, {FAMILY_PARAMETER: FAMILY, "intra_op_thread_count": INTRA_OP_THREADS, **detector_parameters(info)}
    )
    return config


def detector_parameters(info: DetectorInfo) -> dict[str, object]:
    return {
        "input_size": DETECTOR_INPUT_SIZE,
        "mean": DETECTOR_MEAN,
        "std": DETECTOR_STD,
        "strides": ",".join(str(s) for s in info.strides),
        "anchors_per_position": info.anchors,
        "nms_iou_threshold": NMS_IOU_THRESHOLD,
    }


def recognizer_config(info: RecognizerInfo) -> Any:
    from tritonclient.grpc import model_config_pb2 as pb

    from mt_photos_triton.repository import FAMILY_PARAMETER, ModelConfig

    from export.configs import set_parameters

    config = ModelConfig(name=RECOGNIZER_MODEL, backend="onnxruntime", max_batch_size=RECOGNIZER_MAX_BATCH)
    config.dynamic_batching.SetInParent()
    config.instance_group.add(count=MODEL_INSTANCES)
    config.input.add(name="image", data_type=pb.TYPE_FP32, dims=[3, ALIGNED_SIZE, ALIGNED_SIZE])
    config.output.add(name="embedding", data_type=pb.TYPE_FP32, dims=[info.embedding_size])
    set_parameters(
        config, {FAMILY_PARAMETER: FAMILY, "intra_op_thread_count": INTRA_OP_THREADS, **recognizer_parameters(info)}
    )
    return config


def recognizer_parameters(info: RecognizerInfo) -> dict[str, object]:
    return {"mean": info.mean, "std": info.std, "embedding_size": info.embedding_size}


def entry_config(detector: DetectorInfo, recognizer: RecognizerInfo) -> Any:
    """The `faces` BLS model: its parameters repeat the two contracts it applies (it pre- and post-processes)."""
    from tritonclient.grpc import model_config_pb2 as pb

    from mt_photos_triton.repository import BLS_MODELS_PARAMETER, FAMILY_PARAMETER, ModelConfig

    from export.configs import set_parameters

    config = ModelConfig(name=ENTRY_MODEL, backend="python", max_batch_size=ENTRY_MAX_BATCH)
    config.dynamic_batching.max_queue_delay_microseconds = ENTRY_QUEUE_DELAY_US
    config.input.add(name="image_bytes", data_type=pb.TYPE_STRING, dims=[1])
    config.input.add(name="min_score", data_type=pb.TYPE_FP32, dims=[1])
    config.output.add(name="boxes", data_type=pb.TYPE_FP32, dims=[-1, 4])
    config.output.add(name="scores", data_type=pb.TYPE_FP32, dims=[-1])
    config.output.add(name="landmarks", data_type=pb.TYPE_FP32, dims=[-1, 5, 2])
    config.output.add(name="embeddings", data_type=pb.TYPE_FP32, dims=[-1, -1])
    config.output.add(name="count", data_type=pb.TYPE_INT32, dims=[1])
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=ENTRY_INSTANCES)
    parameters: dict[str, object] = {
        FAMILY_PARAMETER: FAMILY,
        BLS_MODELS_PARAMETER: f"{DETECTOR_MODEL},{RECOGNIZER_MODEL}",
        "detector_model": DETECTOR_MODEL,
        "detector_max_batch": DETECTOR_MAX_BATCH,
        "recognizer_model": RECOGNIZER_MODEL,
        "recognizer_max_batch": RECOGNIZER_MAX_BATCH,
    }
    parameters.update({f"detector_{k}": v for k, v in detector_parameters(detector).items()})
    parameters.update({f"recognizer_{k}": v for k, v in recognizer_parameters(recognizer).items()})
    set_parameters(config, parameters)
    return config


def default_configs() -> dict[str, Any]:
    """The configs export writes for buffalo_l (SCRFD det_10g + w600k_r50): the committed ones."""
    detector = DetectorInfo((8, 16, 32), 2, {}, "")
    recognizer = RecognizerInfo(127.5, 127.5, 512, "", "")
    return {
        DETECTOR_MODEL: detector_config(detector),
        RECOGNIZER_MODEL: recognizer_config(recognizer),
        ENTRY_MODEL: entry_config(detector, recognizer),
    }


# --- the export -------------------------------------------------------------------------------------------


def _committed_entry_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "model_repository" / ENTRY_MODEL


def _up_to_date(repository: Path, pack: str, source: str | None) -> bool:
    record_path = repository / ENTRY_MODEL / RECORD_FILE
    if not record_path.is_file():
        return False
    record = json.loads(record_path.read_text())
    if record.get("pack") != pack or record.get("requested_source") != source:
        return False
    if record.get("exporter") != exporter_fingerprint():
        return False
    for model, digest in record.get("written", {}).items():
        weights = repository / model / "1" / "model.onnx"
        if not weights.is_file() or sha256_file(weights) != digest:
            return False
    return (repository / ENTRY_MODEL / "1" / "model.py").is_file()


def exporter_fingerprint() -> str:
    return code_fingerprint(Path(__file__))


def _check_hashes(pack: str, source: str | None, files: dict[str, Path], record_path: Path | None) -> dict[str, str]:
    """sha256 of each source file: checked against the pin, or against what the first export recorded."""
    digests = {name: sha256_file(path) for name, path in files.items()}
    pins = PACKS[pack].sha256 if source is None and pack in PACKS else {}
    for name, path in files.items():
        if name in pins:
            verify_sha256(path, pins[name])
    if source is None and record_path is not None and record_path.is_file():
        previous = json.loads(record_path.read_text()).get("source_sha256", {})
        for name, digest in previous.items():
            if name in digests and digests[name] != digest and name not in pins:
                raise ExportError(
                    f"{pack} {name}: sha256 {digests[name]} differs from {digest} recorded at the first export; "
                    "use --force after checking the new file, or --from a trusted copy"
                )
    return digests


def export(repository: Path, model: str | None, source: str | None, force: bool) -> ExportResult:
    from export.configs import write_config

    pack = model or DEFAULT_PACK
    repository = Path(repository)
    result = ExportResult(FAMILY, pack)
    if not force and _up_to_date(repository, pack, source):
        result.skipped = True
        return result

    record_path = repository / ENTRY_MODEL / RECORD_FILE
    with tempfile.TemporaryDirectory(prefix="mtpt-faces-") as scratch:
        folder, origin = fetch(pack, source, Path(scratch))
        detection, recognition = source_files(folder)
        # --force also accepts files whose hash changed since the first export (after the user checked them)
        previous = None if force else record_path
        digests = _check_hashes(pack, source, {DETECTION_FILE: detection, RECOGNITION_FILE: recognition}, previous)
        if source is None and not PACKS[pack].sha256.keys() >= {DETECTION_FILE, RECOGNITION_FILE}:
            result.notes.append("no pinned sha256 for some files: recorded at this export in faces/export.json")

        detector_info = inspect_detector(detection)
        detector = batch_detector(detection, detector_info)
        detector_gap = check_detector_batch(detection, detector, detector_info)
        recognizer_info = inspect_recognizer(recognition)
        recognizer = batch_recognizer(recognition, recognizer_info)
        recognizer_gap = check_recognizer_batch(recognition, recognizer, recognizer_info)

        record_path.unlink(missing_ok=True)  # a failed export must not look up to date
        written = {
            name: _save(graph, repository / name)
            for name, graph in ((DETECTOR_MODEL, detector), (RECOGNIZER_MODEL, recognizer))
        }
        write_config(repository / DETECTOR_MODEL, detector_config(detector_info))
        write_config(repository / RECOGNIZER_MODEL, recognizer_config(recognizer_info))
        entry_dir = repository / ENTRY_MODEL
        if not (entry_dir / "1" / "model.py").is_file():
            (entry_dir / "1").mkdir(parents=True, exist_ok=True)
            shutil.copy2(_committed_entry_dir() / "1" / "model.py", entry_dir / "1" / "model.py")
        write_config(entry_dir, entry_config(detector_info, recognizer_info))

        try:
            check = self_check(repository, detection, recognition)
        except ExportError:
            for name in written:  # leave nothing that `serve` would load
                (repository / name / "1" / "model.onnx").unlink(missing_ok=True)
            raise
        result.notes.append(check)
        record = {
            "pack": pack,
            "exporter": exporter_fingerprint(),
            "requested_source": source,
            "source": origin,
            "source_sha256": digests,
            "written": written,
            "detector": asdict(detector_info),
            "recognizer": asdict(recognizer_info),
            "batch_check": {"detector_max_abs": detector_gap, "recognizer_max_rel": recognizer_gap},
            "self_check": check,
            "licence": "InsightFace models: non-commercial research use only",
        }
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    result.written = [DETECTOR_MODEL, RECOGNIZER_MODEL, ENTRY_MODEL]
    return result


def _save(graph: Any, model_dir: Path) -> str:
    """Write `<model>/1/model.onnx`; its sha256."""
    import onnx

    target = model_dir / "1" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(target))
    return sha256_file(target)


def self_check(repository: Path, detection: Path, recognition: Path) -> str:
    """Run the exported models once through our pipeline and insightface on the original files; compare."""
    try:
        from insightface.utils import face_align  # noqa: F401
    except ImportError:
        return "self-check skipped: insightface (the `reference` extra) is not installed"
    import numpy as np

    image = self_check_image()
    ours = run_exported(repository, [image], [SELF_CHECK_MIN_SCORE])[0]
    reference = reference_represent(detection, recognition, [image], SELF_CHECK_MIN_SCORE)[0]
    scores = reference.scores
    if len(ours.faces) != len(scores):
        raise ExportError(f"self-check: {len(ours.faces)} faces found, insightface finds {len(scores)}")
    if len(scores):
        box_gap = float(np.abs(ours.faces.boxes - reference.boxes).max())
        score_gap = float(np.abs(ours.faces.scores - scores).max())
        cosine = float(min(cosine_similarity(a, b) for a, b in zip(ours.embeddings, reference.embeddings)))
        if box_gap > SELF_CHECK_BOX_PX or score_gap > SELF_CHECK_SCORE or cosine < SELF_CHECK_COSINE:
            raise ExportError(f"self-check failed: box {box_gap:g} px, score {score_gap:g}, cosine {cosine:.6f}")
        return (
            f"self-check vs insightface: {len(scores)} faces, box ≤ {box_gap:.2g} px, "
            f"score ≤ {score_gap:.2g}, cosine ≥ {cosine:.6f}"
        )
    return "self-check vs insightface: no face on the check image by either"


def cosine_similarity(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def self_check_image() -> Any:
    """insightface's own test photo (6 faces) when its package data is there, else a blank image."""
    import numpy as np

    try:
        import insightface

        path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
        if path.is_file():
            from mt_photos_triton.pipelines.faces import decode_image

            return decode_image(path.read_bytes())
    except ImportError:
        pass
    return np.zeros((480, 640, 3), np.uint8)


def load_contracts(repository: Path) -> tuple[Any, Any]:
    """The detector and recogniser contracts as the `faces` model reads them from its config."""
    from mt_photos_triton.pipelines.faces import contracts_from_parameters
    from mt_photos_triton.repository import read_config

    config = read_config(repository / ENTRY_MODEL)
    return contracts_from_parameters({k: v.string_value for k, v in config.parameters.items()})


def run_exported(repository: Path, images: list[Any], min_scores: list[float]) -> list[Any]:
    """Our pipeline on the exported files with onnxruntime in-process (export's check, tests, the bench)."""
    from mt_photos_triton.pipelines.faces import represent

    detector, recognizer = load_contracts(repository)
    det = _session(repository / DETECTOR_MODEL / "1" / "model.onnx")
    rec = _session(repository / RECOGNIZER_MODEL / "1" / "model.onnx")
    names = detector.output_names

    def detect(blob: Any) -> dict[str, Any]:
        return dict(zip(names, det.run(names, {"image": blob})))

    def embed(blob: Any) -> Any:
        return rec.run(["embedding"], {"image": blob})[0]

    return represent(images, min_scores, detector, recognizer, detect, embed)


@dataclass
class ReferenceFaces:
    boxes: Any  # [N,4] float32
    scores: Any  # [N]
    landmarks: Any  # [N,5,2]
    crops: Any  # [N,112,112,3] uint8 from norm_crop
    embeddings: Any  # [N,D]


def reference_represent(
    detection: Path, recognition: Path, images: list[Any], min_score: float
) -> list[ReferenceFaces]:
    """insightface on the original files, one image and one face at a time: SCRFD at 640 (as the reference
    service prepares it), face_align.norm_crop, ArcFaceONNX.get_feat."""
    import warnings

    import numpy as np
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD
    from insightface.utils import face_align

    size = (DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE)
    detector = SCRFD(str(detection))
    detector.prepare(-1, input_size=size, det_thresh=min_score, nms_thresh=NMS_IOU_THRESHOLD)
    recognizer = ArcFaceONNX(str(recognition))
    recognizer.prepare(-1)
    results = []
    for image in images:
        found, landmarks = detector.detect(image, input_size=size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # skimage's estimate(), called by norm_crop
            crops = np.array([face_align.norm_crop(image, kps) for kps in landmarks], np.uint8)
        crops = crops.reshape(-1, ALIGNED_SIZE, ALIGNED_SIZE, 3)
        embeddings = [recognizer.get_feat(crop).ravel() for crop in crops]
        vectors = np.array(embeddings, np.float32) if embeddings else np.zeros((0, 0), np.float32)
        results.append(ReferenceFaces(found[:, :4], found[:, 4], landmarks, crops, vectors))
    return results
