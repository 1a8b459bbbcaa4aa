"""`mt-photos-triton export faces`: an InsightFace pack (SCRFD detector + ArcFace recogniser) into Triton models.

The pack is the one FACE_RECOGNITION_MODEL_NAME names (else FACE_DETECTION_MODEL_NAME, else buffalo_l), or
`--model`. Sources: Hugging Face `immich-app/<pack>` (HF_ENDPOINT for a mirror), or `--from` a local directory, a
zip, or a URL of a zip laid out as `detection/model.onnx` + `recognition/model.onnx`, taken as that pack.

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

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export import record
from export.common import ExportError, ExportResult
from export.configs import (
    ENTRY_INSTANCES, KIND_AUTO, add_tensor, bound_queue, instances, new_config, serves, set_parameters,
    shrink_arena, write_config,
)
from export.faces_graph import (
    ALIGNED_SIZE, DETECTOR_INPUT_SIZE, DetectorInfo, RecognizerInfo, batch_detector, batch_recognizer,
    check_detector_batch, check_recognizer_batch, inspect_detector, inspect_recognizer,
)
from export.onnx_graph import save, session
from export.sources import download_hf_snapshot, cache_dir, open_source, sha256_file, verify_sha256
from mt_photos_triton.families import FACES_MODEL, FAMILIES
from mt_photos_triton.reference.faces import (
    ReferenceFaces, check_photo, cosine_similarity, reference_available, reference_represent,
)
from mt_photos_triton.repository import BLS_MODELS_PARAMETER

if TYPE_CHECKING:
    from mt_photos_triton.repository import ModelConfig

__all__ = ["ALIGNED_SIZE", "DETECTOR_INPUT_SIZE", "ReferenceFaces", "export", "reference_represent", "run_exported"]

log = logging.getLogger(__name__)

FAMILY = "faces"
DEFAULT_PACK = FAMILIES[FAMILY].default_model
DETECTION_FILE = "detection/model.onnx"
RECOGNITION_FILE = "recognition/model.onnx"
HF_ORGANISATION = "immich-app"

DETECTOR_MODEL = "face_det"
RECOGNIZER_MODEL = "face_rec"
ENTRY_MODEL = FACES_MODEL

# The reference's detection contract (immich/insightface): a 640x640 letterbox, RGB (x - 127.5) / 128,
# greedy NMS at IoU 0.4. The SCRFD files carry no metadata for these: they are insightface's constants.
DETECTOR_MEAN = 127.5
DETECTOR_STD = 128.0
NMS_IOU_THRESHOLD = 0.4
# how many images one detector run and faces one recogniser run may take (Triton max_batch_size)
DETECTOR_MAX_BATCH = 8
RECOGNIZER_MAX_BATCH = 64
ENTRY_MAX_BATCH = 8
ENTRY_QUEUE_DELAY_US = 500
# instances per model: one. Each instance holds its own copy of the weights (the IResNet-50's 174 MB and its
# arena: 0.6 GB a stub after a load), and one image's recognition still overlaps the next one's detection (two
# models); on the 2-4 cores users run, a second instance of the same model only shares those cores with the
# first (its two intra-op threads already use them). Triton places it on each GPU when there is one.
MODEL_INSTANCES = 1
# two onnxruntime threads per instance: with idle pool threads not spinning (the embedded backend's default)
# one request uses both cores and concurrent ones share them; `bench faces` on 2 quiet cores went from
# 0.68/0.92x (1 face) and 0.55/1.05x (6 faces) at concurrency 1/4 with one thread to 0.92/0.95x and 1.10/1.12x
INTRA_OP_THREADS = 2
# `faces` instances: the ENTRY_INSTANCES a bounded queue needs (export/configs.py), so that while one decodes,
# letterboxes and aligns (python, one core) the other keeps the detector and recogniser busy. Four measured +8 %
# on a 1-face photo at concurrency 4 when the ONNX models had two instances each; each costs ~50 MB (docs/memory.md)
ENTRY_MODEL_INSTANCES = ENTRY_INSTANCES
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
# downloaded is recorded at the first export (and checked on every later one).
PACKS = {
    "buffalo_l": Pack("dfb33f6afae127d24d7adc5e7c75fa4a79dca31b"),
    "buffalo_m": Pack("main"),
    "buffalo_s": Pack("main", {DETECTION_FILE: "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a"}),
    "antelopev2": Pack("main"),
}


# --- sources ----------------------------------------------------------------------------------------------


def fetch(pack: str, source: str | None, work: Path) -> tuple[Path, str]:
    """The folder holding detection/ and recognition/, and a description of where it came from."""
    if source is not None:
        folder = open_source(source, work)
        return folder, source if source.startswith(("http://", "https://")) else str(Path(source).expanduser().resolve())
    if pack not in PACKS:
        raise ExportError(f"unknown face pack '{pack}' (known: {', '.join(PACKS)}); use --from DIR_OR_ZIP")
    revision = PACKS[pack].revision
    folder = download_hf_snapshot(
        f"{HF_ORGANISATION}/{pack}", revision, [DETECTION_FILE, RECOGNITION_FILE], cache_dir(FAMILY) / pack
    )
    return folder, f"huggingface:{HF_ORGANISATION}/{pack}@{revision}"


def source_files(folder: Path) -> tuple[Path, Path]:
    detection, recognition = folder / DETECTION_FILE, folder / RECOGNITION_FILE
    for path in (detection, recognition):
        if not path.is_file():
            raise ExportError(f"{path} is missing: a face pack holds {DETECTION_FILE} and {RECOGNITION_FILE}")
    return detection, recognition


def check_hashes(pack: str, source: str | None, files: dict[str, Path], previous: dict[str, str]) -> dict[str, str]:
    """sha256 of each source file: checked against the pin, or against what the first export recorded."""
    digests = {name: sha256_file(path) for name, path in files.items()}
    pins = PACKS[pack].sha256 if source is None and pack in PACKS else {}
    for name, path in files.items():
        if name in pins:
            verify_sha256(path, pins[name])
    for name, digest in previous.items() if source is None else ():
        if name in digests and digests[name] != digest and name not in pins:
            raise ExportError(
                f"{pack} {name}: sha256 {digests[name]} differs from {digest} recorded at the first export; "
                "use --force after checking the new file, or --from a trusted copy"
            )
    return digests


# --- configs ----------------------------------------------------------------------------------------------


def _encoder(name: str, max_batch: int) -> ModelConfig:
    config = new_config(name, FAMILY, max_batch, backend="onnxruntime")
    config.dynamic_batching.SetInParent()
    instances(config, MODEL_INSTANCES, KIND_AUTO)
    set_parameters(config, {"intra_op_thread_count": INTRA_OP_THREADS})
    return config


def detector_config(info: DetectorInfo) -> ModelConfig:
    config = _encoder(DETECTOR_MODEL, DETECTOR_MAX_BATCH)
    size = DETECTOR_INPUT_SIZE
    add_tensor(config.input, "image", "TYPE_FP32", [3, size, size])
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride in info.strides:
            add_tensor(config.output, f"{kind}_{stride}", "TYPE_FP32", [(size // stride) ** 2 * info.anchors, width])
    set_parameters(config, detector_parameters(info))
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


def recognizer_config(info: RecognizerInfo) -> ModelConfig:
    config = _encoder(RECOGNIZER_MODEL, RECOGNIZER_MAX_BATCH)
    # 1 to 64 faces a run: the arena gives back a large batch (free here: a batch-1 run took 72 vs 74 ms with and
    # without, 6 faces 885 vs 983 ms, 2 cores); not on face_det, whose batch-1 run took 38-55 % longer with it
    shrink_arena(config)
    add_tensor(config.input, "image", "TYPE_FP32", [3, ALIGNED_SIZE, ALIGNED_SIZE])
    add_tensor(config.output, "embedding", "TYPE_FP32", [info.embedding_size])
    set_parameters(config, recognizer_parameters(info))
    return config


def recognizer_parameters(info: RecognizerInfo) -> dict[str, object]:
    return {"mean": info.mean, "std": info.std, "embedding_size": info.embedding_size}


def entry_config(detector: DetectorInfo, recognizer: RecognizerInfo, pack: str) -> ModelConfig:
    """The `faces` BLS model: its parameters repeat the two contracts it applies (it pre- and post-processes)."""
    config = new_config(ENTRY_MODEL, FAMILY, ENTRY_MAX_BATCH, backend="python")
    add_tensor(config.input, "image_bytes", "TYPE_STRING", [1])
    add_tensor(config.input, "min_score", "TYPE_FP32", [1])
    add_tensor(config.output, "boxes", "TYPE_FP32", [-1, 4])
    add_tensor(config.output, "scores", "TYPE_FP32", [-1])
    add_tensor(config.output, "landmarks", "TYPE_FP32", [-1, 5, 2])
    add_tensor(config.output, "embeddings", "TYPE_FP32", [-1, -1])
    add_tensor(config.output, "count", "TYPE_INT32", [1])
    config.dynamic_batching.max_queue_delay_microseconds = ENTRY_QUEUE_DELAY_US
    bound_queue(config)  # where requests come in: a bounded rejecting queue (export/configs.py)
    instances(config, ENTRY_MODEL_INSTANCES)
    serves(config, pack)
    parameters: dict[str, object] = {
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


def default_configs() -> dict[str, ModelConfig]:
    """The configs export writes for buffalo_l (SCRFD det_10g + w600k_r50): the committed ones."""
    detector = DetectorInfo((8, 16, 32), 2, {}, "")
    recognizer = RecognizerInfo(127.5, 127.5, 512, "", "")
    return {
        DETECTOR_MODEL: detector_config(detector),
        RECOGNIZER_MODEL: recognizer_config(recognizer),
        ENTRY_MODEL: entry_config(detector, recognizer, DEFAULT_PACK),
    }


# --- the export -------------------------------------------------------------------------------------------


def exporter_fingerprint() -> str:
    from export import batching, faces_graph, onnx_graph
    from mt_photos_triton.reference import faces as reference

    modules = (Path(__file__), *(Path(m.__file__) for m in (batching, faces_graph, onnx_graph, reference)))
    return record.fingerprint(FAMILY, *modules)


def export(repository: Path, model: str | None, source: str | None, force: bool) -> ExportResult:
    """`model` (default: the pack FACE_RECOGNITION_MODEL_NAME names) from Hugging Face, or `source` (`--from`)
    taken as that pack."""
    repository = Path(repository)
    # --force also accepts files whose hash changed since the first export (after the user checked them)
    previous = None if force else record.read(repository, FAMILY)
    exporter = exporter_fingerprint()
    result = record.start(repository, FAMILY, model, source, force, exporter)
    pack = result.model
    if result.skipped:
        return result
    with tempfile.TemporaryDirectory(prefix="mtpt-faces-") as scratch:
        folder, origin = fetch(pack, source, Path(scratch))
        detection, recognition = source_files(folder)
        files = {DETECTION_FILE: detection, RECOGNITION_FILE: recognition}
        digests = check_hashes(pack, source, files, previous.source_sha256 if previous else {})
        if source is None and not PACKS[pack].sha256.keys() >= set(files):
            result.notes.append(f"no pinned sha256 for some files: recorded at this export in {ENTRY_MODEL}/export.json")

        detector_info = inspect_detector(detection)
        detector = batch_detector(detection, detector_info)
        detector_gap = check_detector_batch(detection, detector, detector_info)
        recognizer_info = inspect_recognizer(recognition)
        recognizer = batch_recognizer(recognition, recognizer_info)
        recognizer_gap = check_recognizer_batch(recognition, recognizer, recognizer_info)

        save(detector, repository / DETECTOR_MODEL / "1")
        save(recognizer, repository / RECOGNIZER_MODEL / "1")
        write_config(repository / DETECTOR_MODEL, detector_config(detector_info))
        write_config(repository / RECOGNIZER_MODEL, recognizer_config(recognizer_info))
        write_config(repository / ENTRY_MODEL, entry_config(detector_info, recognizer_info, pack))
        try:
            check = self_check(repository, detection, recognition)
        except ExportError:
            for name in (DETECTOR_MODEL, RECOGNIZER_MODEL):  # leave nothing that `serve` would load
                (repository / name / "1" / "model.onnx").unlink(missing_ok=True)
            raise
        result.notes.append(check)
        details = {
            "detector": asdict(detector_info),
            "recognizer": asdict(recognizer_info),
            "batch_check": {"detector_max_abs": detector_gap, "recognizer_max_rel": recognizer_gap},
            "self_check": check,
            "licence": "InsightFace models: non-commercial research use only",
        }
        record.write(repository, record.Record(FAMILY, pack, source, origin, digests, details, exporter=exporter))
    result.written = [DETECTOR_MODEL, RECOGNIZER_MODEL, ENTRY_MODEL]
    return result


def self_check(repository: Path, detection: Path, recognition: Path) -> str:
    """Run the exported models once through our pipeline and insightface on the original files; compare."""
    if not reference_available():
        return "self-check skipped: insightface (the `reference` extra) is not installed"
    import numpy as np

    from mt_photos_triton.pipelines.faces import decode_image

    photo = check_photo()
    image = decode_image(photo) if photo is not None else np.zeros((480, 640, 3), np.uint8)
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
    det = session(repository / DETECTOR_MODEL / "1" / "model.onnx")
    rec = session(repository / RECOGNIZER_MODEL / "1" / "model.onnx")
    names = detector.output_names

    def detect(blob: Any) -> dict[str, Any]:
        return dict(zip(names, det.run(names, {"image": blob})))

    def embed(blob: Any) -> Any:
        return rec.run(["embedding"], {"image": blob})[0]

    return represent(images, min_scores, detector, recognizer, detect, embed)
