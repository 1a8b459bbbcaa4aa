"""OCR detection: upload → RGB image → detector input, then text boxes from the detector's probability map.

immich-ml v2.5.6 `machine-learning/immich_ml/models/ocr/detection.py` (input transform, box order) driving
RapidOCR's `DBPostProcess` (ch_ppocr_det/utils.py): configured once from `OcrParameters`, then a pure call.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pyclipper
from numpy.typing import NDArray
from PIL import Image, ImageOps

from mt_photos_triton.errors import INVALID_IMAGE, PipelineError
from mt_photos_triton.pipelines.images import OCR_LIMITS, ImageInfo, probe
from mt_photos_triton.pipelines.ocr_parameters import OcrParameters

WHITE = (255, 255, 255)
DB_DILATION_KERNEL = np.ones((2, 2), dtype=np.uint8)
DB_MIN_SIDE = 3  # a candidate's min-area rectangle must be at least this thick (RapidOCR `min_size`)
DB_MIN_SIDE_UNCLIPPED = DB_MIN_SIDE + 2
MIN_BOX_SIDE = 3  # boxes this thin or thinner (after clipping) are dropped
LINE_Y_TOLERANCE = 10  # boxes whose top-left y differ by less are one line, ordered by x


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
