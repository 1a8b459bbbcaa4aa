"""The ocr family's configs: `ocr_det`, `ocr_rec` and the `ocr` python model, with the reference's pipeline
numbers, the instances, thread pools and queue policy they are served with, and their GPU variants
(export/ocr_gpu.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from export import ocr_gpu
from mt_photos_triton.families import OCR_MODEL

if TYPE_CHECKING:
    from mt_photos_triton.repository import ModelConfig

FAMILY = "ocr"
DET_MODEL = "ocr_det"
REC_MODEL = "ocr_rec"
ENTRY_MODEL = OCR_MODEL
DICTIONARY_FILE = "dictionary.txt"

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
    # both keep their arena: a shrinking one slowed the detector's page-sized runs by 60 %, and the recogniser's,
    # whose every run has a new width, cost /ocr up to a quarter of its speed (docs/memory.md)

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
