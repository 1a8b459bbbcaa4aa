"""The reference's `/represent` pipeline, transcribed from immich machine-learning v2.5.6 and mt-photos-ml.

Sources (open-noodle/gallery at 3be8e265, "chore: version v2.5.6"; paths under machine-learning/immich_ml/):
models/facial_recognition/detection.py (FaceDetector), models/facial_recognition/recognition.py (FaceRecognizer),
models/transforms.py (decode_cv2, pil_to_cv2), sessions/ort.py (OrtSession's CPU defaults); dev-fox-101/mt-photos-ml
main.py `/represent`. The maths is insightface's own (RetinaFace, face_align.norm_crop, ArcFaceONNX), called
as immich calls it; no constant or function of ours is imported or repeated here.

One difference is forced: insightface's RetinaFace class (what immich uses) reads only detectors whose outputs
have no batch axis; for a detector with one, insightface's SCRFD class (the same decoding plus that axis) stands in.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

DETECTOR_INPUT = (640, 640)  # detection.py:23
INTRA_OP_THREADS = 2  # sessions/ort.py `_sess_options_default`: 2 intra-op and 1 inter-op thread on CPU
INTER_OP_THREADS = 1


@dataclass(frozen=True)
class ReferenceFaces:
    boxes: NDArray[np.float32]  # [n, 4] x1 y1 x2 y2, before immich's .round()
    scores: NDArray[np.float32]
    landmarks: NDArray[np.float32]  # [n, 5, 2]
    crops: NDArray[np.uint8]  # [n, 112, 112, 3] BGR, norm_crop's
    embeddings: NDArray[np.float32]  # [n, d]

    def facial_areas(self) -> list[dict[str, int]]:
        """mt-photos-ml main.py `/represent`: int() of immich's rounded boxes (detection.py:32)."""
        rounded = self.boxes.round()
        return [{"x": int(x1), "y": int(y1), "w": int(x2 - x1), "h": int(y2 - y1)} for x1, y1, x2, y2 in rounded]


def reference_decode(data: bytes) -> NDArray[np.uint8]:
    """mt-photos-ml main.py `/represent`: cv2.imdecode(IMREAD_COLOR) (EXIF applied), to RGB for a PIL image,
    which immich's decode_cv2 turns back to BGR (transforms.py:46-47, 64-65)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not an image the reference decodes"
    rgb = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return cv2.cvtColor(np.array(rgb), cv2.COLOR_RGB2BGR)


def _session(path: Path) -> Any:
    """sessions/ort.py: CPU provider with arena_extend_strategy kSameAsRequested, 2 intra-op / 1 inter-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.inter_op_num_threads = INTER_OP_THREADS
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"],
        provider_options=[{"arena_extend_strategy": "kSameAsRequested"}],
    )


def _with_batch_axis(recognition: Path, folder: Path) -> Path:
    """recognition.py:37-38 + 79-87 (`_add_batch_axis`): on CPU immich runs all faces in one batch, so a model
    without a "batch" first dim gets one through onnx's update_inputs_outputs_dims."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    proto = onnx.load(str(recognition))
    if proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch":
        return recognition
    inputs = {proto.graph.input[0].name: ["batch"] + [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]]}
    outputs = {proto.graph.output[0].name: ["batch"] + [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim[1:]]}
    path = folder / "recognition-batch.onnx"
    onnx.save(update_inputs_outputs_dims(proto, inputs, outputs), str(path))
    return path


class ReferenceRepresent:
    """FaceDetector + FaceRecognizer as immich loads them (detection.py:20-25, recognition.py:35-44)."""

    def __init__(self, detection: Path, recognition: Path, min_score: float, workdir: Path) -> None:
        from insightface.model_zoo import SCRFD, ArcFaceONNX, RetinaFace

        session = _session(detection)
        batched = len(session.get_outputs()[0].shape) == 3
        self.detector = SCRFD(str(detection), session=session) if batched else RetinaFace(session=session)
        self.detector.prepare(ctx_id=0, det_thresh=min_score, input_size=DETECTOR_INPUT)  # detection.py:23
        recogniser = _with_batch_axis(recognition, workdir)
        self.recogniser = ArcFaceONNX(recogniser.as_posix(), session=_session(recogniser))  # recognition.py:40-43

    def __call__(self, image: NDArray[np.uint8]) -> ReferenceFaces:
        from insightface.utils.face_align import norm_crop

        found, landmarks = self.detector.detect(image)  # detection.py:37-38
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # skimage's estimate(), called by norm_crop
            crops = [norm_crop(image, landmark) for landmark in landmarks]  # recognition.py:76-77
        if crops:
            embeddings = self.recogniser.get_feat(crops)  # recognition.py:56-59: every face in one call
        else:
            embeddings = np.zeros((0, self.recogniser.output_shape[1]), np.float32)
        stacked = np.array(crops, np.uint8).reshape(-1, *self.recogniser.input_size[::-1], 3)
        return ReferenceFaces(found[:, :4], found[:, 4], landmarks, stacked, np.asarray(embeddings, np.float32))
