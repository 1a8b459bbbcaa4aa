"""The reference OCR pipeline, in process: RapidOCR (PyPI `rapidocr==3.10.0`) configured as immich-ml v2.5.6
configures it, on the same ONNX files, plus mt-photos-ml's `/ocr` formatting.

Used by the parity tests and `mt-photos-triton bench ocr` only (needs the `reference` extra). The maths is
RapidOCR's own classes (DBPostProcess, TextRecognizer) where immich uses them; the immich parts that are not
RapidOCR classes (detector resize/normalise, reading order, perspective crops) are transcribed from immich
v2.5.6 (open-noodle/gallery at 3be8e265) `machine-learning/immich_ml/models/ocr/detection.py` and
`recognition.py`, each citing its lines; thresholds are immich's constants, deliberately written here once
more and NOT read from our configs or code, so that a wrong exported parameter shows up as a parity failure.
Nothing of our OCR pipeline is imported or repeated here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# immich-ml v2.5.6 constants (mt-photos-ml passes no options, so the defaults hold)
MAX_RESOLUTION = 736  # detection.py:27
DB_THRESH = 0.3  # detection.py:35-40, DBPostProcess(...)
DB_BOX_THRESH = 0.5  # detection.py:36, minScore's default
DB_MAX_CANDIDATES = 1000
DB_UNCLIP_RATIO = 1.6
REC_BATCH_NUM = 6  # recognition.py:63, without MACHINE_LEARNING_MAX_BATCH_SIZE
REC_IMG_SHAPE = (3, 48, 320)  # recognition.py:64
MIN_TEXT_SCORE = 0.9  # recognition.py:29
MIN_SIDE = 32  # detection.py:68


@dataclass(frozen=True)
class ReferenceLine:
    text: str
    score: float  # float64, 5 decimals, as RapidOCR returns it
    box: list[list[float]]  # [[x,y] x4] tl, tr, br, bl as mt-photos-ml rebuilds them


class _OcrOptions(dict):  # type: ignore[type-arg]
    """immich's OcrOptions (ocr/schemas.py:21-27): a dict RapidOCR also reads attributes from."""

    def __init__(self, **options: Any) -> None:
        from rapidocr.utils.typings import EngineType, LangRec

        super().__init__(**options)
        self.engine_type = EngineType.ONNXRUNTIME
        self.lang_type = LangRec.CH
        self.font_path = None


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class _NoDrawing:
    """Stands for RapidOCR's VisRes in its recogniser's results, which would load (download) a font to draw."""

    def __init__(self, **kwargs: Any) -> None:
        pass


def _no_result_drawing() -> None:
    """immich replaces VisRes.__init__ for the whole process (recognition.py:36) so that each recogniser call
    (rapidocr ch_ppocr_rec/main.py, TextRecOutput(viser=VisRes(...))) loads no font; the effect on the results
    is none. Here only the recogniser module's name is replaced, so RapidOCR's drawing elsewhere keeps working."""
    import rapidocr.ch_ppocr_rec.main as recogniser_module

    recogniser_module.VisRes = _NoDrawing  # type: ignore[attr-defined, misc]


class ReferenceOcr:
    """immich's TextDetector + TextRecognizer on `det`/`rec` with `dictionary`; call with a PIL RGB image."""

    def __init__(self, det: Path, rec: Path, dictionary: Path, threads: int | None = None) -> None:
        from rapidocr.ch_ppocr_det.utils import DBPostProcess
        from rapidocr.ch_ppocr_rec import TextRecognizer

        _no_result_drawing()
        self.det_session = _session(det, threads)
        self.postprocess = DBPostProcess(
            thresh=DB_THRESH,
            box_thresh=DB_BOX_THRESH,
            max_candidates=DB_MAX_CANDIDATES,
            unclip_ratio=DB_UNCLIP_RATIO,
            use_dilation=True,
            score_mode="fast",
        )
        self.recognizer = TextRecognizer(
            _OcrOptions(
                session=_session(rec, threads),
                rec_batch_num=REC_BATCH_NUM,
                rec_img_shape=REC_IMG_SHAPE,
                rec_keys_path=str(dictionary),  # immich lets RapidOCR find it beside its download; here, given
            )
        )

    def detect(
        self, image: Image.Image, max_resolution: int = MAX_RESOLUTION
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """detection.py:66-77 (TextDetector._predict)."""
        w, h = image.size
        if w < MIN_SIDE or h < MIN_SIDE:
            return np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
        pixels = self._transform(image, max_resolution)
        out = self.det_session.run(None, {self.det_session.get_inputs()[0].name: pixels})[0]
        boxes, scores = self.postprocess(out, (h, w))
        if len(boxes) == 0:
            return np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
        return self._sorted_boxes(boxes), np.array(scores, dtype=np.float32)

    def __call__(self, image: Image.Image) -> list[ReferenceLine]:
        """recognition.py:70-89 (TextRecognizer._predict), then mt-photos-ml main.py `/ocr`: boxes times the
        image size again, sorted by the first corner's y (a stable sort)."""
        from rapidocr.ch_ppocr_rec import TextRecInput

        boxes, _ = self.detect(image)
        if len(boxes) == 0:
            return []
        rec = self.recognizer(TextRecInput(img=self._crops(image, boxes)))
        if rec.txts is None:
            return []
        scores = np.array(rec.scores)
        keep = scores > MIN_TEXT_SCORE
        # immich normalises the boxes by the image size; mt-photos-ml multiplies them back
        norm = boxes.copy()
        norm[:, :, 0] /= image.width
        norm[:, :, 1] /= image.height
        lines = [
            ReferenceLine(
                rec.txts[i],
                float(scores[i]),
                [[float(norm[i][j][0] * image.width), float(norm[i][j][1] * image.height)] for j in range(4)],
            )
            for i in range(len(rec.txts))
            if keep[i]
        ]
        lines.sort(key=lambda line: line.box[0][1])
        return lines

    def immich_answer(
        self, image: Image.Image, det_min_score: float, max_resolution: int, rec_min_score: float
    ) -> dict[str, Any]:
        """immich-ml's `ocr` answer with a request's options: TextDetector.configure (detection.py:119-125) and
        TextRecognizer.configure (recognition.py:152-153), then recognition.py:70-89 as is. (Its `boxScore` is
        the detector's scores in detection order, beside boxes in reading order.)"""
        from rapidocr.ch_ppocr_rec import TextRecInput

        empty = {"box": np.empty(0, np.float32), "boxScore": np.empty(0, np.float32), "text": [],
                 "textScore": np.empty(0, np.float32)}
        self.postprocess.box_thresh = det_min_score
        try:
            boxes, box_scores = self.detect(image, max_resolution)
        finally:
            self.postprocess.box_thresh = DB_BOX_THRESH
        if len(boxes) == 0:
            return empty
        rec = self.recognizer(TextRecInput(img=self._crops(image, boxes)))
        if rec.txts is None:
            return empty
        boxes[:, :, 0] /= image.width
        boxes[:, :, 1] /= image.height
        text_scores = np.array(rec.scores)
        keep = text_scores > rec_min_score
        return {
            "box": boxes.reshape(-1, 8)[keep].reshape(-1),
            "text": [rec.txts[i] for i in range(len(rec.txts)) if keep[i]],
            "boxScore": box_scores[keep],
            "textScore": text_scores[keep],
        }

    def _transform(self, img: Image.Image, max_resolution: int = MAX_RESOLUTION) -> NDArray[np.float32]:
        """detection.py:80-98 (TextDetector._transform) with its mean and std_inv (detection.py:28-29)."""
        import cv2

        ratio = max_resolution / img.height if img.height < img.width else max_resolution / img.width
        ratio = min(ratio, 1.0)
        resize_h = int(round(int(img.height * ratio) / 32) * 32)
        resize_w = int(round(int(img.width * ratio) / 32) * 32)
        resized = img.resize((resize_w, resize_h), resample=Image.Resampling.LANCZOS)
        pixels = cv2.cvtColor(np.array(resized, dtype=np.float32), cv2.COLOR_RGB2BGR)
        pixels -= np.array([0.5, 0.5, 0.5], dtype=np.float32)
        pixels *= np.float32(1.0) / (np.array([0.5, 0.5, 0.5], dtype=np.float32) * 255.0)
        return np.expand_dims(np.transpose(pixels, (2, 0, 1)), axis=0)

    @staticmethod
    def _sorted_boxes(boxes: NDArray[Any]) -> NDArray[np.float32]:
        """detection.py:100-117 (TextDetector.sorted_boxes)."""
        boxes = np.asarray(boxes, dtype=np.float32)
        y_order = np.argsort(boxes[:, 0, 1], kind="stable")
        sorted_y = boxes[y_order, 0, 1]
        line_ids = np.empty(len(boxes), dtype=np.int32)
        line_ids[0] = 0
        np.cumsum(np.abs(np.diff(sorted_y)) >= 10, out=line_ids[1:])
        # immich indexes line_ids by y_order a second time; kept, it decides the order of equal-y boxes
        sort_key = line_ids[y_order] * 1e6 + boxes[y_order, 0, 0]
        return boxes[y_order[np.argsort(sort_key, kind="stable")]]

    @staticmethod
    def _crops(img: Image.Image, boxes: NDArray[np.float32]) -> list[NDArray[np.uint8]]:
        """recognition.py:91-118 (get_crop_img_list) and 120-150 (_get_perspective_transform)."""
        import cv2

        widths = np.maximum(
            np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1), np.linalg.norm(boxes[:, 2] - boxes[:, 3], axis=1)
        ).astype(np.int32)
        heights = np.maximum(
            np.linalg.norm(boxes[:, 0] - boxes[:, 3], axis=1), np.linalg.norm(boxes[:, 1] - boxes[:, 2], axis=1)
        ).astype(np.int32)
        src = np.zeros((len(boxes), 4, 2), dtype=np.float32)
        src[:, 1:3, 0] = widths[:, None]
        src[:, 2:4, 1] = heights[:, None]
        x, y = src[:, :, 0], src[:, :, 1]
        u, v = boxes[:, :, 0], boxes[:, :, 1]
        a = np.zeros((len(boxes), 8, 9), dtype=np.float32)
        a[:, ::2, 0], a[:, ::2, 1], a[:, ::2, 2] = x, y, 1
        a[:, ::2, 6], a[:, ::2, 7], a[:, ::2, 8] = -u * x, -u * y, -u
        a[:, 1::2, 3], a[:, 1::2, 4], a[:, 1::2, 5] = x, y, 1
        a[:, 1::2, 6], a[:, 1::2, 7], a[:, 1::2, 8] = -v * x, -v * y, -v
        _, _, vt = np.linalg.svd(a)
        h = vt[:, -1, :].reshape(len(boxes), 3, 3)
        h = h / h[:, 2:3, 2:3]
        coeffs = np.column_stack([h[:, 0, 0], h[:, 0, 1], h[:, 0, 2], h[:, 1, 0], h[:, 1, 1], h[:, 1, 2], h[:, 2, 0], h[:, 2, 1]])
        crops = []
        for c, size in zip(coeffs, np.stack([widths, heights], axis=1)):
            crop = img.transform(
                size=tuple(size), method=Image.Transform.PERSPECTIVE, data=tuple(c), resample=Image.Resampling.BICUBIC
            )
            if crop.height * 1.0 / crop.width >= 1.5:
                crop = crop.rotate(90, expand=True)
            crops.append(cv2.cvtColor(np.array(crop), cv2.COLOR_RGB2BGR))  # transforms.py:46-47 (pil_to_cv2)
        return crops


def reference_decode(data: bytes) -> Image.Image:
    """mt-photos-ml main.py `/ocr`: Pillow open, load, convert to RGB unless RGB (no EXIF orientation, alpha
    dropped)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def reference_body(lines: list[ReferenceLine]) -> dict[str, Any]:
    """mt-photos-ml's `trans_ocr_result` on the lines."""
    return {
        "result": {
            "texts": [line.text for line in lines],
            "scores": [f"{line.score:.2f}" for line in lines],
            "boxes": [
                {
                    "x": str(round(line.box[0][0], 2)),
                    "y": str(round(line.box[0][1], 2)),
                    "width": str(round(line.box[1][0] - line.box[0][0], 2)),
                    "height": str(round(line.box[2][1] - line.box[0][1], 2)),
                }
                for line in lines
            ],
        }
    }
