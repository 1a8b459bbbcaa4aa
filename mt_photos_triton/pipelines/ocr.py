"""OCR (PP-OCRv5 det + rec) of one image as the reference service computes it: the `OcrJob` stages, results
and the `ocr` model's padded outputs; no Triton import.

The reference is immich-ml v2.5.6 (`machine-learning/immich_ml/models/ocr/detection.py`, `recognition.py`)
driving RapidOCR's `DBPostProcess` and `TextRecognizer`; mt-photos-ml then formats the result. The maths is in
`ocr_detection` (decode, detector input, DB boxes, reading order) and `ocr_recognition` (crops, recogniser
batches, CTC); every number comes from an `OcrParameters` (`ocr_parameters`) built from the `ocr` model's config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from mt_photos_triton.pipelines.ocr_detection import (
    DBPostProcess,
    decode_image,
    detection_input,
    reading_order,
    too_small,
)
from mt_photos_triton.pipelines.ocr_parameters import OcrParameters, WidthBuckets
from mt_photos_triton.pipelines.ocr_recognition import (
    CTCDecoder,
    RecognitionBatch,
    RecognizerOutput,
    collect_recognition,
    crop_lines,
    recognition_batches,
)


@dataclass(frozen=True)
class OcrResult:
    texts: list[str]
    scores: NDArray[np.float32]  # [N] text scores
    boxes: NDArray[np.float32]  # [N,4,2] tl, tr, br, bl in pixels of the (oriented) image
    box_scores: NDArray[np.float32]  # [N] the detector's score of each box (immich's `boxScore`)
    # [N] each line's place in reading order (immich detection.py `sorted_boxes`); lines are given sorted by
    # top-left y as mt-photos-ml's /ocr sorts them, and argsort(reading_order) gives immich's order
    reading_order: NDArray[np.int32]
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the image read, EXIF orientation applied

    @classmethod
    def empty(cls) -> OcrResult:
        none = np.zeros(0, dtype=np.float32)
        return cls([], none, np.zeros((0, 4, 2), dtype=np.float32), none.copy(), np.zeros(0, dtype=np.int32))


def select_texts(
    boxes: NDArray[np.float32],
    recognised: Sequence[tuple[str, float]],
    params: OcrParameters,
    box_scores: Sequence[float] | None = None,
) -> OcrResult:
    """Texts scoring above the threshold, sorted by top-left y (stable), as mt-photos-ml's /ocr does; `boxes`
    (with their `box_scores`) come in reading order, which each kept line's `reading_order` records."""
    keep = [i for i, (_, score) in enumerate(recognised) if score > params.text_score_threshold]
    in_reading_order = list(keep)
    keep.sort(key=lambda i: float(boxes[i, 0, 1]))
    if not keep:
        return OcrResult.empty()
    detector_scores = np.zeros(len(boxes), dtype=np.float32) if box_scores is None else np.asarray(box_scores)
    return OcrResult(
        [recognised[i][0] for i in keep],
        np.array([recognised[i][1] for i in keep], dtype=np.float32),
        boxes[keep].astype(np.float32),
        detector_scores[keep].astype(np.float32),
        np.array([in_reading_order.index(i) for i in keep], dtype=np.int32),
    )


def pad_results(results: Sequence[OcrResult]) -> dict[str, NDArray]:
    """The `ocr` model's outputs for one request of len(results) images: padded to the largest count."""
    width = max((len(r.texts) for r in results), default=0)
    texts = np.full((len(results), width), b"", dtype=np.object_)
    scores = np.zeros((len(results), width), dtype=np.float32)
    boxes = np.zeros((len(results), width, 4, 2), dtype=np.float32)
    box_scores = np.zeros((len(results), width), dtype=np.float32)
    reading_order = np.zeros((len(results), width), dtype=np.int32)
    count = np.zeros((len(results), 1), dtype=np.int32)
    image_size = np.zeros((len(results), 2), dtype=np.int32)
    for row, result in enumerate(results):
        n = len(result.texts)
        texts[row, :n] = [text.encode("utf-8") for text in result.texts]
        scores[row, :n] = result.scores
        boxes[row, :n] = result.boxes
        box_scores[row, :n] = result.box_scores
        reading_order[row, :n] = result.reading_order
        count[row, 0] = n
        image_size[row] = result.image_size
    return {
        "texts": texts, "scores": scores, "boxes": boxes, "count": count,
        "box_scores": box_scores, "reading_order": reading_order, "image_size": image_size,
    }


@dataclass
class OcrJob:
    """One image through the pipeline's stages; the model runs between stages are the caller's (Triton BLS),
    so that the stages of many images can be interleaved and their model calls batched together."""

    image: Image.Image
    detector_input: NDArray[np.float32] | None  # [3,H,W]; None when the image is too small to read
    boxes: NDArray[np.float32] | None = None
    box_scores: list[float] | None = None  # the detector's score of each of `boxes`
    batches: list[RecognitionBatch] | None = None
    outcome: OcrResult | None = None  # what was read, once recognised
    looked_again: bool = False
    params: OcrParameters | None = None  # the numbers this image is read with (the config's, or a request's)
    buckets: WidthBuckets | None = None  # GPU: the widths the recogniser is sent at; None: each batch's own

    @classmethod
    def start(cls, data: bytes, params: OcrParameters, buckets: WidthBuckets | None = None) -> OcrJob:
        image = decode_image(data)
        detector_input = None if too_small(image, params) else detection_input(image, params)
        return cls(image, detector_input, params=params, buckets=buckets)

    def detected(self, probability: NDArray[np.float32], postprocess: DBPostProcess, params: OcrParameters) -> None:
        """Boxes from the detector's [1,H,W] output, then the recogniser batches of their crops."""
        boxes, scores = postprocess(probability[0], self.image.width, self.image.height, params.box_threshold)
        order = reading_order(boxes)
        self.boxes, self.box_scores = boxes[order], [scores[i] for i in order]
        self.batches = recognition_batches(crop_lines(self.image, self.boxes), params, self.buckets)

    def recognised(self, outputs: Sequence[RecognizerOutput], decoder: CTCDecoder, params: OcrParameters) -> None:
        if self.boxes is None or not self.batches:
            self.outcome = OcrResult.empty()
        else:
            recognised = collect_recognition(self.batches, outputs, decoder)
            self.outcome = select_texts(self.boxes, recognised, params, self.box_scores)

    def retry_input(self, params: OcrParameters) -> NDArray[np.float32] | None:
        """The detector input of one second look at `retry_scale`, for an image where nothing was read: large
        lettering escapes the detector at the reference's scale (its strokes' edges alone light up)."""
        if self.looked_again or self.outcome is None or self.outcome.texts or params.retry_scale <= 0:
            return None
        shorter = min(self.image.width, self.image.height)
        if shorter * min(params.det_limit_side / shorter, 1.0) * params.retry_scale < params.min_side:
            return None  # the smaller look would be under the size the pipeline reads at all
        self.looked_again = True
        return detection_input(self.image, params, params.retry_scale)

    def result(self) -> OcrResult:
        return replace(self.outcome or OcrResult.empty(), image_size=self.image.size)
