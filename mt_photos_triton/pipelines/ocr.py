"""OCR maths (PP-OCRv5 det + rec), as the reference service computes it; no Triton import.

The reference is immich-ml v2.5.6 (`machine-learning/immich_ml/models/ocr/detection.py`, `recognition.py`)
driving RapidOCR's `DBPostProcess` and `TextRecognizer`; mt-photos-ml then formats the result. Every number
here comes from an `OcrParameters` built from the `ocr` model's config (written by export): no second default.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np
import pyclipper
from numpy.typing import NDArray
from PIL import Image, ImageOps

from mt_photos_triton.errors import INVALID_IMAGE, INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines.images import OCR_LIMITS, ImageInfo, probe

WHITE = (255, 255, 255)
DB_DILATION_KERNEL = np.ones((2, 2), dtype=np.uint8)
DB_MIN_SIDE = 3  # a candidate's min-area rectangle must be at least this thick (RapidOCR `min_size`)
DB_MIN_SIDE_UNCLIPPED = DB_MIN_SIDE + 2
MIN_BOX_SIDE = 3  # boxes this thin or thinner (after clipping) are dropped
LINE_Y_TOLERANCE = 10  # boxes whose top-left y differ by less are one line, ordered by x
ROTATE_ASPECT = 1.5  # crops this much taller than wide are turned 90 degrees counter-clockwise
SCORE_DECIMALS = 5  # RapidOCR rounds each step probability and the mean to 5 decimals


@dataclass(frozen=True)
class OcrParameters:
    """The pipeline's numbers, read from the `ocr` model config's `parameters` (all strings there)."""

    min_side: int  # images smaller than this on a side give no text
    det_limit_side: int  # the shorter side is scaled down to at most this
    det_multiple: int  # detector input sides are rounded to a multiple of this
    det_mean: float  # detector normalisation: (x - mean) / std, x in 0..255 (the reference's formula)
    det_std: float
    binary_threshold: float
    box_threshold: float
    max_candidates: int
    unclip_ratio: float
    rec_height: int
    rec_min_width: int  # recogniser batches are at least this wide (RapidOCR rec_img_shape 3x48x320)
    rec_batch_size: int
    text_score_threshold: float
    # when nothing is found at the reference's scale, detect once more at this fraction of it (0: never);
    # large lettering (glyphs over ~100 px) escapes the detector at full size (docs/compatibility.md)
    retry_scale: float

    @classmethod
    def from_config(cls, parameters: Mapping[str, str]) -> OcrParameters:
        values: dict[str, object] = {}
        for field in fields(cls):
            if field.name not in parameters:
                raise KeyError(f"config parameter '{field.name}' is missing: re-run `mt-photos-triton export ocr`")
            kind = int if field.type in ("int", int) else float
            values[field.name] = kind(parameters[field.name])
        return cls(**values)  # type: ignore[arg-type]

    def as_config(self) -> dict[str, str]:
        return {field.name: str(getattr(self, field.name)) for field in fields(self)}


MAX_DET_LIMIT_SIDE = 10000  # a request's max resolution above the largest side any image may have is refused


@dataclass(frozen=True)
class OcrOptions:
    """What one request may set instead of the config's numbers (immich's per-request `options`: detection
    `minScore`, `maxResolution`, recognition `minScore`); None keeps the config's value."""

    box_threshold: float | None = None
    det_limit_side: int | None = None
    text_score_threshold: float | None = None

    def applied(self, params: OcrParameters) -> OcrParameters:
        """`params` with these options in place; an option out of its range is refused (invalid_input)."""
        for name in ("box_threshold", "text_score_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise PipelineError(INVALID_INPUT, f"{name} {value} is not within 0..1")
        side = self.det_limit_side
        if side is not None and not params.det_multiple <= side <= MAX_DET_LIMIT_SIDE:
            raise PipelineError(
                INVALID_INPUT, f"max resolution {side} is not within {params.det_multiple}..{MAX_DET_LIMIT_SIDE}"
            )
        given = {field.name: getattr(self, field.name) for field in fields(self) if getattr(self, field.name) is not None}
        return replace(params, **given) if given else params


def check_format(data: bytes) -> ImageInfo:
    """The header check (format allow-list without GIF, 10000 px limit, pixel budget) done before any decoding."""
    return probe(data, OCR_LIMITS)


def decode_image(data: bytes) -> Image.Image:
    """RGB pixels of an upload, EXIF orientation applied, transparency composited on white.

    Both differ from the reference on purpose (docs/compatibility.md): it reads rotated phone photos
    sideways and turns black text on a transparent background into black on black.
    """
    check_format(data)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return to_rgb_on_white(image)
    except PipelineError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt data
        raise PipelineError(INVALID_IMAGE, f"undecodable image ({type(error).__name__})") from error


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    if has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def too_small(image: Image.Image, params: OcrParameters) -> bool:
    return image.width < params.min_side or image.height < params.min_side


def detection_size(width: int, height: int, params: OcrParameters, scale: float = 1.0) -> tuple[int, int]:
    """(width, height) of the detector input: shorter side at most the limit (times `scale`), sides rounded to
    the multiple."""
    ratio = min(float(params.det_limit_side) / min(width, height), 1.0) * scale
    m = params.det_multiple
    return int(round(int(width * ratio) / m) * m), int(round(int(height * ratio) / m) * m)


def detection_input(image: Image.Image, params: OcrParameters, scale: float = 1.0) -> NDArray[np.float32]:
    """[3,H,W] float32 BGR; immich: TextDetector._transform (LANCZOS, then (x - 0.5) / 127.5)."""
    size = detection_size(image.width, image.height, params, scale)
    resized = image.resize(size, resample=Image.Resampling.LANCZOS)
    pixels = np.asarray(resized, dtype=np.float32)[:, :, ::-1]
    pixels = (pixels - np.float32(params.det_mean)) * (np.float32(1.0) / np.float32(params.det_std))
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


class DBPostProcess:
    """Text boxes from the detector's probability map; RapidOCR ch_ppocr_det/utils.py `DBPostProcess`
    with score_mode "fast" and dilation, followed by its `filter_det_res`."""

    def __init__(self, params: OcrParameters) -> None:
        self.binary_threshold = params.binary_threshold
        self.box_threshold = params.box_threshold
        self.max_candidates = params.max_candidates
        self.unclip_ratio = params.unclip_ratio

    def __call__(
        self, probability: NDArray[np.float32], width: int, height: int, box_threshold: float | None = None
    ) -> tuple[NDArray[np.float32], list[float]]:
        """`probability` [H',W'] for an image of `width` x `height`: boxes [N,4,2] (tl, tr, br, bl) and scores.
        `box_threshold` replaces the configured one for this call (immich's detection `minScore`)."""
        threshold = self.box_threshold if box_threshold is None else box_threshold
        bitmap = cv2.dilate((probability > self.binary_threshold).astype(np.uint8), DB_DILATION_KERNEL)
        contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        map_h, map_w = bitmap.shape
        boxes: list[NDArray[np.float32]] = []
        scores: list[float] = []
        for contour in contours[: self.max_candidates]:
            points, short_side = min_area_box(contour)
            if short_side < DB_MIN_SIDE:
                continue
            score = box_score_fast(probability, points)
            if score < threshold:
                continue
            points, short_side = min_area_box(unclip(points, self.unclip_ratio))
            if short_side < DB_MIN_SIDE_UNCLIPPED:
                continue
            scaled = np.empty_like(points)
            scaled[:, 0] = np.clip(np.round(points[:, 0] / map_w * width), 0, width)
            scaled[:, 1] = np.clip(np.round(points[:, 1] / map_h * height), 0, height)
            box = clip_box(order_clockwise(scaled.astype(np.int32)), width, height)
            if int(np.linalg.norm(box[0] - box[1])) <= MIN_BOX_SIDE or int(np.linalg.norm(box[0] - box[3])) <= MIN_BOX_SIDE:
                continue
            boxes.append(box)
            scores.append(score)
        if not boxes:
            return np.zeros((0, 4, 2), dtype=np.float32), []
        return np.stack(boxes).astype(np.float32), scores


def min_area_box(contour: NDArray) -> tuple[NDArray[np.float32], float]:
    """The min-area rectangle's corners as (left-top, right-top, right-bottom, left-bottom) by RapidOCR's
    `get_mini_boxes` rule, and its shorter side."""
    rectangle = cv2.minAreaRect(contour)
    corners = sorted(list(cv2.boxPoints(rectangle)), key=lambda p: p[0])
    left = (corners[0], corners[1]) if corners[1][1] > corners[0][1] else (corners[1], corners[0])
    right = (corners[2], corners[3]) if corners[3][1] > corners[2][1] else (corners[3], corners[2])
    box = np.array([left[0], right[0], right[1], left[1]])
    return box, min(rectangle[1])


def box_score_fast(probability: NDArray[np.float32], box: NDArray[np.float32]) -> float:
    """Mean probability inside the polygon, over its bounding box."""
    h, w = probability.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=box.dtype)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(probability[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def unclip(box: NDArray[np.float32], ratio: float) -> NDArray:
    """Grow the box by area * ratio / perimeter with round joins (pyclipper), as RapidOCR does."""
    closed = box.astype(np.float64)
    x, y = closed[:, 0], closed[:, 1]
    area = abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0
    perimeter = float(np.sum(np.linalg.norm(closed - np.roll(closed, -1, axis=0), axis=1)))
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return np.array(offset.Execute(area * ratio / perimeter)).reshape((-1, 1, 2))


def order_clockwise(points: NDArray) -> NDArray[np.float32]:
    """(tl, tr, br, bl): the two left-most points by y, then the two right-most by y."""
    by_x = points[np.argsort(points[:, 0]), :]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1]), :]
    tr, br = right[np.argsort(right[:, 1]), :]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def clip_box(box: NDArray[np.float32], width: int, height: int) -> NDArray[np.float32]:
    box[:, 0] = np.trunc(np.clip(box[:, 0], 0, width - 1))
    box[:, 1] = np.trunc(np.clip(box[:, 1], 0, height - 1))
    return box


def reading_order(boxes: NDArray[np.float32]) -> NDArray[np.intp]:
    """Indices that order boxes as immich detection.py `sorted_boxes` does: stable by top-left y, a new
    line where y jumps by LINE_Y_TOLERANCE or more, then by (line, x). immich looks the line ids up through
    the y order a second time; reproduced, because it decides the order of boxes with equal y."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    by_y = np.argsort(boxes[:, 0, 1], kind="stable")
    lines = np.zeros(len(boxes), dtype=np.int32)
    np.cumsum(np.abs(np.diff(boxes[by_y, 0, 1])) >= LINE_Y_TOLERANCE, out=lines[1:])
    key = lines[by_y] * 1e6 + boxes[by_y, 0, 0]
    return by_y[np.argsort(key, kind="stable")]


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


def recognition_batches(crops: Sequence[NDArray[np.uint8]], params: OcrParameters) -> list[RecognitionBatch]:
    """Crops sorted by aspect ratio, in batches of `rec_batch_size`, each padded to its widest member;
    RapidOCR ch_ppocr_rec/main.py `TextRecognizer.__call__` (results depend on this batching)."""
    ratios = [crop.shape[1] / float(crop.shape[0]) for crop in crops]
    order = np.argsort(np.array(ratios))
    batches = []
    for start in range(0, len(crops), params.rec_batch_size):
        members = [int(i) for i in order[start : start + params.rec_batch_size]]
        max_ratio = max([params.rec_min_width / params.rec_height] + [ratios[i] for i in members])
        width = int(params.rec_height * max_ratio)
        pixels = np.stack([recognition_input(crops[i], params.rec_height, width) for i in members])
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

    @classmethod
    def start(cls, data: bytes, params: OcrParameters) -> OcrJob:
        image = decode_image(data)
        return cls(image, None if too_small(image, params) else detection_input(image, params), params=params)

    def detected(self, probability: NDArray[np.float32], postprocess: DBPostProcess, params: OcrParameters) -> None:
        """Boxes from the detector's [1,H,W] output, then the recogniser batches of their crops."""
        boxes, scores = postprocess(probability[0], self.image.width, self.image.height, params.box_threshold)
        order = reading_order(boxes)
        self.boxes, self.box_scores = boxes[order], [scores[i] for i in order]
        self.batches = recognition_batches(crop_lines(self.image, self.boxes), params)

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
