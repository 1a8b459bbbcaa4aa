"""What immich's server reads from `/predict` (server/src/repositories/machine-learning.repository.ts and the
services that use its answers, immich v2.5.6), written as a client: a reader that fails where immich would."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# a pgvector literal: smart-info.service.ts and person.service.ts store `clip` / `embedding` strings as they come
VECTOR = re.compile(r"^\[-?\d+(\.\d+)?(e[+-]?\d+)?(,-?\d+(\.\d+)?(e[+-]?\d+)?)*\]$")


def vector(text: Any) -> list[float]:
    assert isinstance(text, str) and VECTOR.match(text), f"not a vector literal: {str(text)[:80]}"
    values = json.loads(text)  # JSON.parse
    assert values and all(isinstance(v, (int, float)) for v in values)
    return [float(v) for v in values]


def dimensions(answer: dict[str, Any]) -> tuple[int, int]:
    height, width = answer["imageHeight"], answer["imageWidth"]
    assert isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
    return width, height


@dataclass(frozen=True)
class OcrLine:
    """ocr.service.ts `parseOcrResults`: box[i*8 … i*8+7], boxScore[i], textScore[i], text[i]."""

    points: tuple[float, ...]
    box_score: float
    text_score: float
    text: str


def clip_answer(answer: dict[str, Any], image: bool) -> list[float]:
    """encodeImage / encodeText: response[clip]."""
    assert set(answer) == ({"clip", "imageHeight", "imageWidth"} if image else {"clip"}), sorted(answer)
    if image:
        dimensions(answer)
    return vector(answer["clip"])


def faces_answer(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """detectFaces → person.service.ts: boundingBox x1..y2 scaled by imageWidth/Height, embedding stored."""
    assert set(answer) == {"facial-recognition", "imageHeight", "imageWidth"}, sorted(answer)
    width, height = dimensions(answer)
    faces = []
    for face in answer["facial-recognition"]:
        assert set(face) == {"boundingBox", "embedding", "score"}
        box = face["boundingBox"]
        assert set(box) == {"x1", "y1", "x2", "y2"} and all(isinstance(v, float) for v in box.values())
        assert box["x1"] < box["x2"] and box["y1"] < box["y2"]
        assert isinstance(face["score"], float) and 0 < face["score"] <= 1
        faces.append({"box": box, "embedding": vector(face["embedding"]), "score": face["score"]})
    return faces


def ocr_answer(answer: dict[str, Any]) -> list[OcrLine]:
    assert set(answer) == {"ocr", "imageHeight", "imageWidth"}, sorted(answer)
    dimensions(answer)
    ocr = answer["ocr"]
    assert set(ocr) == {"text", "box", "boxScore", "textScore"}
    count = len(ocr["text"])
    assert len(ocr["box"]) == 8 * count and len(ocr["boxScore"]) == count and len(ocr["textScore"]) == count
    lines = []
    for i in range(count):
        points = tuple(ocr["box"][i * 8 : i * 8 + 8])
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in points), points
        lines.append(OcrLine(points, ocr["boxScore"][i], ocr["textScore"][i], ocr["text"][i]))
    return lines
