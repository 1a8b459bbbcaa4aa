"""The reference's wire formats, in one place: how numbers, boxes and embeddings of Triton's outputs are
written into the JSON that MT Photos stores (API spec, "Number formats")."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

DETECTOR_BACKEND = "insightface"  # what `/check` and `/represent` name as the face detector
# RapidOCR's text scores have 5 decimals; rounding the float32 back to them gives the reference's float64,
# so `:.2f` rounds the same way (0.995 must print 0.99, as the reference's 0.995 does)
OCR_SCORE_DECIMALS = 5
OCR_BOX_DECIMALS = 2


def clip_strings(values: NDArray[np.float32]) -> list[str]:
    """The `/clip/*` result strings: the shortest float32 repr, read back as float64, 16 decimals.

    (The reference serialises with orjson, MT Photos parses that JSON and prints "{:.16f}".) numpy's
    float32-to-str cast is the shortest round-trip repr, like orjson's.
    """
    shortest = np.asarray(values, dtype=np.float32).reshape(-1).astype(str)
    return [f"{float(s):.16f}" for s in shortest]


def embedding_numbers(embedding: NDArray[np.float32]) -> list[float]:
    """Each float32 as its shortest round-trip decimal, read back as a float64 (so JSON prints `0.33333334`,
    not `0.3333333432674408`), as the reference serialises a face embedding."""
    return [float(text) for text in np.asarray(embedding, dtype=np.float32).astype(str)]


def facial_area(box: NDArray[np.float32]) -> dict[str, int]:
    """`facial_area`: the box rounded half-to-even (the reference's `round()`), then x, y, w, h; not clipped,
    so x and y can be negative."""
    x1, y1, x2, y2 = (int(v) for v in np.round(np.asarray(box, dtype=np.float32)))
    return {"x": x1, "y": y1, "w": x2 - x1, "h": y2 - y1}


def faces_result(outputs: dict[str, NDArray[Any]]) -> list[dict[str, Any]]:
    """The faces of the first image of a `faces` answer (best score first; rows past `count` are padding)."""
    found = int(outputs["count"][0, 0])
    return [
        {
            "embedding": embedding_numbers(outputs["embeddings"][0, index]),
            "facial_area": facial_area(outputs["boxes"][0, index]),
            "face_confidence": float(outputs["scores"][0, index]),  # float32 to float64, printed in full
        }
        for index in range(found)
    ]


def ocr_score(score: float) -> str:
    return f"{round(float(score), OCR_SCORE_DECIMALS):.2f}"


def ocr_coordinate(value: float) -> str:
    return str(round(float(value), OCR_BOX_DECIMALS))


def ocr_result(outputs: dict[str, NDArray[Any]]) -> dict[str, list[Any]]:
    """mt-photos-ml's `/ocr` result for the first image of the `ocr` model's outputs (already filtered and
    ordered by the model): x, y = top-left; width = top-right.x - top-left.x; height = bottom-right.y - top-left.y."""
    count = int(outputs["count"][0, 0])
    texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in outputs["texts"][0, :count]]
    boxes = outputs["boxes"][0, :count].astype(np.float64)
    return {
        "texts": texts,
        "scores": [ocr_score(s) for s in outputs["scores"][0, :count]],
        "boxes": [
            {
                "x": ocr_coordinate(box[0, 0]),
                "y": ocr_coordinate(box[0, 1]),
                "width": ocr_coordinate(box[1, 0] - box[0, 0]),
                "height": ocr_coordinate(box[2, 1] - box[0, 1]),
            }
            for box in boxes
        ],
    }
