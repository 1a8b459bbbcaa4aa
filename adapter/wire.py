"""The reference's wire formats, in one place: how numbers, boxes and embeddings of Triton's outputs are
written into the JSON that MT Photos stores (API spec, "Number formats")."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from mt_photos_triton.pipelines.clip_profile import FIXED16, SHORTEST

DETECTOR_BACKEND = "insightface"  # what `/check` and `/represent` name as the face detector
# RapidOCR's text scores have 5 decimals; rounding the float32 back to them gives the reference's float64,
# so `:.2f` rounds the same way (0.995 must print 0.99, as the reference's 0.995 does)
OCR_SCORE_DECIMALS = 5
OCR_BOX_DECIMALS = 2


def shortest_floats(values: NDArray[np.float32]) -> list[float]:
    """Each float32 as its shortest round-trip decimal, read back as a float64 (so JSON prints `0.33333334`, not
    `0.3333333432674408`): what the reference gets from orjson's OPT_SERIALIZE_NUMPY, and with it (C, one pass:
    512 values in ~0.1 ms, where numpy's float32-to-str cast took ~0.6 ms). A non-finite value, which orjson writes
    as null, reads back as numpy's str does ("nan", "inf")."""
    floats = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if not np.isfinite(floats).all():
        return [float(text) for text in floats.astype(str)]
    return orjson.loads(orjson.dumps(floats, option=orjson.OPT_SERIALIZE_NUMPY))  # type: ignore[no-any-return]


def clip_strings(values: NDArray[np.float32], number_format: str = SHORTEST) -> list[str]:
    """The `/clip/*` result strings in the profile's number format (pipelines/clip_profile.py).

    `shortest`: the shortest float32 repr, read back as float64, 16 decimals (mt-photos-ml serialises with
    orjson, MT Photos parses that JSON and prints "{:.16f}"). `fixed16`: the float32's exact value with 16
    decimals (mt-photos-ai onnx/server.py:173, 183: "{:.16f}".format of each float of the output's `.tolist()`).
    """
    if number_format == FIXED16:
        return ["%.16f" % v for v in np.asarray(values, dtype=np.float32).reshape(-1).astype(np.float64).tolist()]
    if number_format != SHORTEST:
        raise ValueError(f"unknown CLIP number format {number_format!r}")
    return ["%.16f" % v for v in shortest_floats(values)]


def embedding_numbers(embedding: NDArray[np.float32]) -> list[float]:
    """A face embedding as the reference serialises it: each float32's shortest decimal, as a float64."""
    return shortest_floats(embedding)


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


# ------------------------------------------------------------------------------------ immich's /predict
# immich-ml answers with FastAPI's ORJSONResponse (orjson, OPT_SERIALIZE_NUMPY) and writes each embedding as
# the string `orjson.dumps(array)` (machine-learning/immich_ml/models/transforms.py `serialize_np_array`).
# orjson writes the shortest round-trip digits of a float32 (numpy) or float64 (Python) value, in plain notation
# for decimal exponents within these bounds and in scientific notation ("1e-7", "1.5e+15") outside them.
_PLAIN_EXPONENTS = {np.dtype(np.float32): (-7, 13), np.dtype(np.float64): (-6, 16)}  # exclusive bounds


def orjson_number(value: float | np.floating[Any]) -> str:
    """`value` as orjson writes it: a numpy float32 with float32's shortest digits, anything else as a float64."""
    kind = np.dtype(np.float32) if isinstance(value, np.float32) else np.dtype(np.float64)
    number = kind.type(value)
    if not np.isfinite(number):
        return "null"
    sign = "-" if np.signbit(number) else ""
    if number == 0:
        return f"{sign}0.0"
    mantissa, exponent_text = np.format_float_scientific(abs(number), unique=True).split("e")
    digits, exponent = mantissa.replace(".", "").rstrip("0") or "0", int(exponent_text)
    low, high = _PLAIN_EXPONENTS[kind]
    if not low < exponent < high:
        fraction = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{fraction}e{'+' if exponent > 0 else '-'}{abs(exponent)}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    whole = digits[: exponent + 1].ljust(exponent + 1, "0")
    return f"{sign}{whole}.{digits[exponent + 1:] or '0'}"


def orjson_bytes(value: Any) -> bytes:
    """`value` serialised as immich-ml's orjson does: compact, raw UTF-8, numpy scalars and arrays as numbers."""
    return _orjson_text(value).encode()


def _orjson_text(value: Any) -> str:
    if value is None or isinstance(value, (bool, np.bool_)):
        return json.dumps(None if value is None else bool(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return orjson_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_orjson_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, np.ndarray):
        return _orjson_text(list(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_orjson_text(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not serialisable")


def immich_embedding(values: NDArray[np.float32]) -> str:
    """An embedding as immich-ml's `serialize_np_array` writes it: a JSON array of float32s, in a string."""
    return orjson_bytes(np.asarray(values, dtype=np.float32).reshape(-1)).decode()


def immich_clip(outputs: dict[str, NDArray[Any]]) -> str:
    """`clip`: the embedding of the first row as immich-ml's string (models/clip/visual.py, textual.py)."""
    return immich_embedding(outputs["embedding"][0])


def immich_faces(outputs: dict[str, NDArray[Any]]) -> list[dict[str, Any]]:
    """`facial-recognition`: per face its box in pixels rounded half-to-even and kept float32 (`123.0`, immich
    detection.py `bboxes[:, :4].round()`), its embedding string and float32 score (recognition.py `postprocess`)."""
    found = int(outputs["count"][0, 0])
    boxes = np.round(np.asarray(outputs["boxes"][0, :found], dtype=np.float32))
    return [
        {
            "boundingBox": dict(zip(("x1", "y1", "x2", "y2"), boxes[index])),
            "embedding": immich_embedding(outputs["embeddings"][0, index]),
            "score": np.float32(outputs["scores"][0, index]),
        }
        for index in range(found)
    ]


def immich_ocr(outputs: dict[str, NDArray[Any]]) -> dict[str, Any]:
    """`ocr`: the lines in immich's reading order; `box` one flat float32 list, 8 numbers a line (x1,y1 … x4,y4)
    divided by the width and height of the image read; `boxScore` float32; `textScore` RapidOCR's 5-decimal
    float64 (immich recognition.py `_predict`)."""
    count = int(outputs["count"][0, 0])
    order = np.argsort(outputs["reading_order"][0, :count], kind="stable")
    width, height = (np.float32(side) for side in outputs["image_size"][0])
    boxes = np.asarray(outputs["boxes"][0, :count], dtype=np.float32)[order]
    boxes[:, :, 0] /= width
    boxes[:, :, 1] /= height
    texts = outputs["texts"][0, :count][order]
    return {
        "text": [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts],
        "box": boxes.reshape(-1),
        "boxScore": np.asarray(outputs["box_scores"][0, :count], dtype=np.float32)[order],
        "textScore": [round(float(s), OCR_SCORE_DECIMALS) for s in outputs["scores"][0, :count][order]],
    }
