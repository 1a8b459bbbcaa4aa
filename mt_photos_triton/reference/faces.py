"""The reference for faces: insightface on the original pack files, as the reference service runs it.

SCRFD at 640x640 with NMS at IoU 0.4 (immich-ml's face detection), `face_align.norm_crop` to 112x112, and
ArcFaceONNX.get_feat, one image and one face at a time. Export's self-check, the parity tests and the bench
compare our pipeline with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# insightface's own constants, as the reference service sets them
INPUT_SIZE = 640
NMS_IOU_THRESHOLD = 0.4
ALIGNED_SIZE = 112


@dataclass
class ReferenceFaces:
    boxes: Any  # [N,4] float32
    scores: Any  # [N]
    landmarks: Any  # [N,5,2]
    crops: Any  # [N,112,112,3] uint8 from norm_crop
    embeddings: Any  # [N,D]


def reference_represent(
    detection: Path, recognition: Path, images: list[Any], min_score: float
) -> list[ReferenceFaces]:
    """insightface on the original files, one image and one face at a time: SCRFD at 640 (as the reference
    service prepares it), face_align.norm_crop, ArcFaceONNX.get_feat."""
    import warnings

    import numpy as np
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD
    from insightface.utils import face_align

    size = (INPUT_SIZE, INPUT_SIZE)
    detector = SCRFD(str(detection))
    detector.prepare(-1, input_size=size, det_thresh=min_score, nms_thresh=NMS_IOU_THRESHOLD)
    recognizer = ArcFaceONNX(str(recognition))
    recognizer.prepare(-1)
    results = []
    for image in images:
        found, landmarks = detector.detect(image, input_size=size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # skimage's estimate(), called by norm_crop
            crops = np.array([face_align.norm_crop(image, kps) for kps in landmarks], np.uint8)
        crops = crops.reshape(-1, ALIGNED_SIZE, ALIGNED_SIZE, 3)
        embeddings = [recognizer.get_feat(crop).ravel() for crop in crops]
        vectors = np.array(embeddings, np.float32) if embeddings else np.zeros((0, 0), np.float32)
        results.append(ReferenceFaces(found[:, :4], found[:, 4], landmarks, crops, vectors))
    return results


def reference_available() -> bool:
    try:
        from insightface.utils import face_align  # noqa: F401
    except ImportError:
        return False
    return True


def check_photo() -> bytes | None:
    """insightface's own test photo (6 faces), from its package data when that is installed."""
    try:
        import insightface
    except ImportError:
        return None
    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    return path.read_bytes() if path.is_file() else None


def cosine_similarity(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
