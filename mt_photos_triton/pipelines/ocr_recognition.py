"""OCR recognition: perspective crops of the text boxes → recogniser batches → greedy CTC decoding.

immich-ml v2.5.6 `machine-learning/immich_ml/models/ocr/recognition.py` (crops) and RapidOCR's `TextRecognizer`
and `CTCLabelDecode` (ch_ppocr_rec/main.py, utils.py: batching, input scaling, decoding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from mt_photos_triton.pipelines.ocr_parameters import OcrParameters, WidthBuckets

ROTATE_ASPECT = 1.5  # crops this much taller than wide are turned 90 degrees counter-clockwise
SCORE_DECIMALS = 5  # RapidOCR rounds each step probability and the mean to 5 decimals


def perspective_coefficients(boxes: NDArray[np.float32], sizes: NDArray[np.int32]) -> NDArray[np.float32]:
    """Pillow PERSPECTIVE data mapping each crop rectangle onto its box; immich recognition.py
    `_get_perspective_transform` (float32 SVD of the 8x9 DLT system, so crops match to the pixel)."""
    n = len(boxes)
    src = np.zeros((n, 4, 2), dtype=np.float32)
    src[:, 1:3, 0] = sizes[:, None, 0]
    src[:, 2:4, 1] = sizes[:, None, 1]
    x, y = src[:, :, 0], src[:, :, 1]
    u, v = boxes[:, :, 0], boxes[:, :, 1]
    system = np.zeros((n, 8, 9), dtype=np.float32)
    system[:, ::2, 0], system[:, ::2, 1], system[:, ::2, 2] = x, y, 1
    system[:, ::2, 6], system[:, ::2, 7], system[:, ::2, 8] = -u * x, -u * y, -u
    system[:, 1::2, 3], system[:, 1::2, 4], system[:, 1::2, 5] = x, y, 1
    system[:, 1::2, 6], system[:, 1::2, 7], system[:, 1::2, 8] = -v * x, -v * y, -v
    _, _, vt = np.linalg.svd(system)
    homography = vt[:, -1, :].reshape(n, 3, 3)
    homography = homography / homography[:, 2:3, 2:3]
    return homography.reshape(n, 9)[:, :8]


def crop_lines(image: Image.Image, boxes: NDArray[np.float32]) -> list[NDArray[np.uint8]]:
    """One BGR uint8 crop per box: width = longer of top/bottom edges, height = longer of the sides,
    bicubic; crops much taller than wide are rotated 90 degrees counter-clockwise (immich recognition.py)."""
    if len(boxes) == 0:
        return []
    widths = np.maximum(
        np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1), np.linalg.norm(boxes[:, 2] - boxes[:, 3], axis=1)
    ).astype(np.int32)
    heights = np.maximum(
        np.linalg.norm(boxes[:, 0] - boxes[:, 3], axis=1), np.linalg.norm(boxes[:, 1] - boxes[:, 2], axis=1)
    ).astype(np.int32)
    sizes = np.stack([widths, heights], axis=1)
    crops = []
    for coefficients, size in zip(perspective_coefficients(boxes, sizes), sizes):
        crop = image.transform(
            size=(int(size[0]), int(size[1])),
            method=Image.Transform.PERSPECTIVE,
            data=tuple(coefficients),
            resample=Image.Resampling.BICUBIC,
        )
        if crop.height / crop.width >= ROTATE_ASPECT:
            crop = crop.rotate(90, expand=True)
        crops.append(np.ascontiguousarray(np.asarray(crop)[:, :, ::-1]))
    return crops


@dataclass(frozen=True)
class RecognitionBatch:
    indices: list[int]  # positions of these crops in the crop list
    pixels: NDArray[np.float32]  # [n,3,height,width]


def recognition_batches(
    crops: Sequence[NDArray[np.uint8]], params: OcrParameters, buckets: WidthBuckets | None = None
) -> list[RecognitionBatch]:
    """Crops sorted by aspect ratio, in batches of `rec_batch_size`, each padded to its widest member;
    RapidOCR ch_ppocr_rec/main.py `TextRecognizer.__call__` (results depend on this batching). With `buckets`
    (GPU) each batch is padded on, with the same zeros, to its width's bucket; every step of the recogniser's
    output is still decoded, as for a narrow crop in a wide batch (the steps over padding read blank)."""
    ratios = [crop.shape[1] / float(crop.shape[0]) for crop in crops]
    order = np.argsort(np.array(ratios))
    batches = []
    for start in range(0, len(crops), params.rec_batch_size):
        members = [int(i) for i in order[start : start + params.rec_batch_size]]
        max_ratio = max([params.rec_min_width / params.rec_height] + [ratios[i] for i in members])
        width = int(params.rec_height * max_ratio)
        pixels = np.stack([recognition_input(crops[i], params.rec_height, width) for i in members])
        if buckets is not None and buckets.width(width) > width:
            pixels = np.pad(pixels, ((0, 0), (0, 0), (0, 0), (0, buckets.width(width) - width)))
        batches.append(RecognitionBatch(members, pixels))
    return batches


def recognition_input(crop: NDArray[np.uint8], height: int, width: int) -> NDArray[np.float32]:
    """One crop resized to `height` (at most `width` wide), scaled to -1..1 and zero padded on the right."""
    h, w = crop.shape[:2]
    resized_w = min(width, int(math.ceil(height * (w / float(h)))))  # this rounding order, as RapidOCR
    resized = cv2.resize(crop, (resized_w, height)).astype(np.float32).transpose(2, 0, 1) / 255
    resized -= 0.5
    resized /= 0.5
    padded = np.zeros((3, height, width), dtype=np.float32)
    padded[:, :, :resized_w] = resized
    return padded


class CTCDecoder:
    """Greedy CTC: best class per step, repeats merged, blanks dropped; RapidOCR ch_ppocr_rec/utils.py
    `CTCLabelDecode`. Classes are blank + dictionary lines + space."""

    BLANK = 0

    def __init__(self, dictionary: Sequence[str]) -> None:
        self.characters = ["blank", *dictionary, " "]

    @classmethod
    def from_file(cls, path: Path) -> CTCDecoder:
        lines = path.read_bytes().decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls([line.strip("\r\n") for line in lines])

    def __call__(self, classes: NDArray[np.int64], confidences: NDArray[np.float32]) -> list[tuple[str, float]]:
        """Best class and its probability per step ([n,T] each; the exported recogniser computes them in its
        graph) → (text, score) per row."""
        results = []
        for indices, probs in zip(classes, confidences):
            keep = np.ones(len(indices), dtype=bool)
            keep[1:] = indices[1:] != indices[:-1]
            keep &= indices != self.BLANK
            confidence = [round(p, SCORE_DECIMALS) for p in probs[keep].tolist()] or [0]
            text = "".join(self.characters[i] for i in indices[keep])
            results.append((text, float(np.mean(confidence).round(SCORE_DECIMALS))))
        return results

    def from_probabilities(self, probabilities: NDArray[np.float32]) -> list[tuple[str, float]]:
        """The same from full [n,T,C] class probabilities (a recogniser graph as published)."""
        best = probabilities.argmax(axis=2)
        return self(best, np.take_along_axis(probabilities, best[:, :, None], axis=2)[:, :, 0])



RecognizerOutput = tuple[NDArray[np.int64], NDArray[np.float32]]  # (classes, confidences), [n,T] each


def collect_recognition(
    batches: Sequence[RecognitionBatch], outputs: Sequence[RecognizerOutput], decoder: CTCDecoder
) -> list[tuple[str, float]]:
    """(text, score) per crop, in crop order, from the recogniser's output for each batch."""
    count = sum(len(batch.indices) for batch in batches)
    recognised: list[tuple[str, float]] = [("", 0.0)] * count
    for batch, (classes, confidences) in zip(batches, outputs):
        for index, result in zip(batch.indices, decoder(classes, confidences)):
            recognised[index] = result
    return recognised
