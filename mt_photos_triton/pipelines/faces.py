"""Faces: decode, letterbox, SCRFD anchor decode + NMS, ArcFace alignment and normalisation (no Triton import).

The Triton `faces` model, export's self-check, the parity tests and the bench call these same functions. The
numbers follow insightface (`model_zoo/scrfd.py` SCRFD.detect/forward/nms, `utils/face_align.py` norm_crop,
`model_zoo/arcface_onnx.py` get_feat) operation for operation, in the same dtypes, so that the same model
outputs give the same boxes, scores and crops.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from mt_photos_triton.errors import INVALID_IMAGE, PipelineError
from mt_photos_triton.pipelines.images import FACES_LIMITS, check_size, probe

# insightface utils/face_align.py `arcface_dst`: where the 5 landmarks of a 112x112 ArcFace crop lie
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
ALIGNED_SIZE = 112
LANDMARKS = 5
# per-anchor widths of the three SCRFD maps: score, box distances (l, t, r, b), keypoint offsets (5 x (x, y))
SCORE_WIDTH, BOX_WIDTH, KEYPOINT_WIDTH = 1, 4, 2 * LANDMARKS


@dataclass(frozen=True)
class DetectorContract:
    """What export read from the detector file; every value comes from the model config's parameters."""

    input_size: int  # square letterbox side, 640
    mean: float  # input (x - mean) / std on RGB
    std: float
    strides: tuple[int, ...]  # feature strides, one score/box/keypoint map each
    anchors: int  # anchors per grid position
    nms_iou: float  # greedy NMS IoU threshold

    def output_name(self, kind: str, stride: int) -> str:
        """The graph output (and Triton output) holding map `kind` ("score", "bbox", "kps") of `stride`."""
        return f"{kind}_{stride}"

    @property
    def output_names(self) -> list[str]:
        return [self.output_name(kind, s) for kind in ("score", "bbox", "kps") for s in self.strides]


@dataclass(frozen=True)
class RecognizerContract:
    mean: float  # insightface's choice from the first graph nodes: 127.5/127.5, or 0/1 when the graph normalises
    std: float
    embedding_size: int


@dataclass
class Faces:
    """The faces of one image, best score first: boxes [N,4] (x1,y1,x2,y2), scores [N], landmarks [N,5,2]."""

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    landmarks: NDArray[np.float32]

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, LANDMARKS, 2), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


# --- decoding ---------------------------------------------------------------------------------------------


def decode_image(data: bytes) -> NDArray[np.uint8]:
    """BGR uint8 [H,W,3] as the reference reads it: OpenCV, EXIF orientation applied, alpha dropped, grey
    expanded. A GIF (which the reference's OpenCV refuses) gives its first frame (fix). The header check
    (size limits, allowed formats) runs first, so nothing oversized is ever decoded."""
    info = probe(data, FACES_LIMITS)
    try:
        if info.format == "GIF":
            with Image.open(io.BytesIO(data)) as gif:
                gif.seek(0)
                rgb = np.asarray(gif.convert("RGB"))
            image = np.ascontiguousarray(rgb[:, :, ::-1])
        else:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except Exception as error:  # noqa: BLE001 - decoders raise many types on corrupt bodies
        raise PipelineError(INVALID_IMAGE, f"cannot decode this {info.format} ({type(error).__name__})") from error
    if image is None:
        raise PipelineError(INVALID_IMAGE, f"OpenCV cannot decode this {info.format}")
    height, width = image.shape[:2]
    check_size(width, height, FACES_LIMITS)  # EXIF rotation swaps the sides: the limit holds either way
    return image


# --- detection --------------------------------------------------------------------------------------------


def letterbox(image: NDArray[np.uint8], size: int) -> tuple[NDArray[np.uint8], float]:
    """The image resized (bilinear) into a size x size black canvas at the top-left, and the scale applied.
    insightface model_zoo/scrfd.py SCRFD.detect: same integer truncation of the new sides."""
    height, width = image.shape[:2]
    ratio = float(height) / width
    if ratio > 1.0:
        new_height = size
        new_width = int(new_height / ratio)
    else:
        new_width = size
        new_height = int(new_width * ratio)
    scale = float(new_height) / height
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:new_height, :new_width, :] = cv2.resize(image, (new_width, new_height))
    return canvas, scale


def to_nchw_rgb(
    images: Sequence[NDArray[np.uint8]] | NDArray[np.uint8], mean: float, std: float
) -> NDArray[np.float32]:
    """BGR uint8 [N,H,W,3] → float32 NCHW RGB, (x − mean) / std: cv2.dnn.blobFromImages, as insightface
    prepares both models' inputs (the same bytes as numpy's (x − mean) * (1/std) in float32; a 640x640 canvas
    in 1.9 ms against numpy's 5.2)."""
    batch = list(images)
    height, width = batch[0].shape[:2]
    return cv2.dnn.blobFromImages(batch, 1.0 / std, (width, height), (mean, mean, mean), swapRB=True, crop=False)


def anchor_centres(size: int, stride: int, anchors: int) -> NDArray[np.float32]:
    """[rows, 2] (x, y) centres of every anchor of one stride's grid, in letterbox pixels."""
    cells = size // stride
    centres = np.stack(np.mgrid[:cells, :cells][::-1], axis=-1).astype(np.float32)
    centres = (centres * stride).reshape((-1, 2))
    if anchors > 1:
        centres = np.stack([centres] * anchors, axis=1).reshape((-1, 2))
    return centres


def distance_to_boxes(centres: NDArray[np.float32], distances: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.stack(
        [
            centres[:, 0] - distances[:, 0],
            centres[:, 1] - distances[:, 1],
            centres[:, 0] + distances[:, 2],
            centres[:, 1] + distances[:, 3],
        ],
        axis=-1,
    )


def distance_to_keypoints(centres: NDArray[np.float32], distances: NDArray[np.float32]) -> NDArray[np.float32]:
    points = [centres[:, axis % 2] + distances[:, axis] for axis in range(distances.shape[1])]
    return np.stack(points, axis=-1).reshape((-1, LANDMARKS, 2))


def nms(boxes: NDArray[np.float32], scores: NDArray[np.float32], iou_threshold: float) -> list[int]:
    """Greedy NMS with the +1 pixel areas of insightface SCRFD.nms; indices kept, best first."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = width * height
        overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[np.where(overlap <= iou_threshold)[0]]
    return keep


class ScrfdDecoder:
    """Anchor decode, score filter, rescale, sort and NMS of one image's SCRFD maps (configured once)."""

    def __init__(self, contract: DetectorContract) -> None:
        self.contract = contract
        self.centres = {s: anchor_centres(contract.input_size, s, contract.anchors) for s in contract.strides}

    def __call__(self, maps: Mapping[str, NDArray[np.float32]], scale: float, min_score: float) -> Faces:
        """`maps`: this image's outputs by name without batch axis (score [rows,1], bbox [rows,4], kps [rows,10])."""
        name = self.contract.output_name
        scores_list, boxes_list, keypoints_list = [], [], []
        for stride in self.contract.strides:
            scores = maps[name("score", stride)]
            keep = np.where(scores >= min_score)[0]
            # only the anchors kept: the same row-wise arithmetic as decoding all of them and then selecting
            centres = self.centres[stride][keep]
            boxes = distance_to_boxes(centres, maps[name("bbox", stride)][keep] * stride)
            keypoints = distance_to_keypoints(centres, maps[name("kps", stride)][keep] * stride)
            scores_list.append(scores[keep])
            boxes_list.append(boxes)
            keypoints_list.append(keypoints)
        scores = np.vstack(scores_list).ravel()
        if scores.size == 0:
            return Faces.empty()
        order = np.argsort(-scores, kind="stable")
        boxes = np.vstack(boxes_list) / scale
        keypoints = np.vstack(keypoints_list) / scale
        candidates = np.hstack((boxes, scores[:, None])).astype(np.float32, copy=False)[order]
        keypoints = keypoints[order]
        kept = nms(candidates[:, :4], candidates[:, 4], self.contract.nms_iou)
        found = candidates[kept]
        return Faces(
            np.ascontiguousarray(found[:, :4]),
            np.ascontiguousarray(found[:, 4]),
            np.ascontiguousarray(keypoints[kept].astype(np.float32, copy=False)),
        )


# --- alignment and recognition ----------------------------------------------------------------------------


def similarity_transform(source: NDArray[np.floating], target: NDArray[np.floating]) -> NDArray[np.float64]:
    """The 2x3 least-squares similarity (rotation, uniform scale, translation) taking `source` points onto
    `target` points: Umeyama (1991), solved as scikit-image's SimilarityTransform.estimate solves it
    (skimage transform/_geometric.py `_umeyama`), in the points' own dtype: float32 landmarks give the very
    matrix norm_crop uses, so warpAffine samples the same sub-pixel positions."""
    src, dst = np.asarray(source), np.asarray(target)
    count, dims = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    covariance = dst_centred.T @ src_centred / count
    signs = np.ones((dims,), dtype=np.float64)
    if np.linalg.det(covariance) < 0:
        signs[-1] = -1
    u, singular, vt = np.linalg.svd(covariance)
    rank = np.count_nonzero(singular > singular.max() * max(covariance.shape) * np.finfo(float).eps)
    if rank == 0:
        raise ValueError("degenerate landmarks")
    transform = np.eye(dims + 1, dtype=np.float64)
    if rank == dims - 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        flipped = signs.copy()
        flipped[-1] = -1
        transform[:dims, :dims] = u @ np.diag(flipped) @ vt
    elif rank == dims - 1:
        transform[:dims, :dims] = u @ vt
    else:
        transform[:dims, :dims] = u @ np.diag(signs) @ vt
    scale = 1.0 / src_centred.var(axis=0).sum() * (singular @ signs)
    transform[:dims, dims] = dst_mean - scale * (transform[:dims, :dims] @ src_mean.T)
    transform[:dims, :dims] *= scale
    return transform[:2, :]


def align_face(image: NDArray[np.uint8], landmarks: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The 112x112 BGR ArcFace crop of one face (insightface face_align.norm_crop: bilinear, black border)."""
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    return cv2.warpAffine(image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), borderValue=0.0)


def aligned_crops(image: NDArray[np.uint8], faces: Faces) -> NDArray[np.uint8]:
    """[N,112,112,3] crops of all faces of one image."""
    crops = np.zeros((len(faces), ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
    for crop, landmarks in zip(crops, faces.landmarks):
        crop[...] = align_face(image, landmarks)
    return crops


# --- the whole pipeline over plain callables (ORT sessions in tests and export, BLS calls in Triton) -------

DetectFn = Callable[[NDArray[np.float32]], Mapping[str, NDArray[np.float32]]]  # [B,3,S,S] → maps with batch axis
EmbedFn = Callable[[NDArray[np.float32]], NDArray[np.float32]]  # [N,3,112,112] → [N,D]


@dataclass
class ImageFaces:
    faces: Faces
    embeddings: NDArray[np.float32]  # [N, D]


def detect_batch(
    images: Sequence[NDArray[np.uint8]],
    min_scores: Sequence[float],
    contract: DetectorContract,
    decoder: ScrfdDecoder,
    detect: DetectFn,
) -> list[Faces]:
    """One detector call for all images (one letterbox each)."""
    if not images:
        return []
    boxed = [letterbox(image, contract.input_size) for image in images]
    maps = detect(to_nchw_rgb([canvas for canvas, _ in boxed], contract.mean, contract.std))
    return [
        decoder({name: maps[name][index] for name in contract.output_names}, scale, min_score)
        for index, ((_, scale), min_score) in enumerate(zip(boxed, min_scores))
    ]


def embed_batch(
    images: Sequence[NDArray[np.uint8]], found: Sequence[Faces], contract: RecognizerContract, embed: EmbedFn
) -> list[NDArray[np.float32]]:
    """One recogniser call for every face of every image; the embeddings split back per image."""
    crops = [aligned_crops(image, faces) for image, faces in zip(images, found)]
    counts = [len(c) for c in crops]
    if sum(counts) == 0:
        return [np.zeros((0, contract.embedding_size), np.float32) for _ in images]
    vectors = embed(to_nchw_rgb(np.concatenate(crops), contract.mean, contract.std)).astype(np.float32, copy=False)
    return np.split(vectors, np.cumsum(counts)[:-1])


def represent(
    images: Sequence[NDArray[np.uint8]],
    min_scores: Sequence[float],
    detector: DetectorContract,
    recognizer: RecognizerContract,
    detect: DetectFn,
    embed: EmbedFn,
    decoder: ScrfdDecoder | None = None,
) -> list[ImageFaces]:
    """Faces and embeddings of each image: one detector call for all images, one recogniser call for all faces."""
    decoder = decoder or ScrfdDecoder(detector)
    found = detect_batch(images, min_scores, detector, decoder, detect)
    vectors = embed_batch(images, found, recognizer, embed)
    return [ImageFaces(faces, embeddings) for faces, embeddings in zip(found, vectors)]


def facial_area(box: NDArray[np.float32]) -> dict[str, int]:
    """The API's `facial_area`: the box rounded half-to-even (the reference's `round()`), then x, y, w, h;
    not clipped, so x and y can be negative."""
    x1, y1, x2, y2 = (int(v) for v in np.round(box.astype(np.float32)))
    return {"x": x1, "y": y1, "w": x2 - x1, "h": y2 - y1}


def contracts_from_parameters(parameters: Mapping[str, str]) -> tuple[DetectorContract, RecognizerContract]:
    """Both contracts from the `faces` model's config parameters (written by export; no defaults here)."""
    try:
        detector = DetectorContract(
            input_size=int(parameters["detector_input_size"]),
            mean=float(parameters["detector_mean"]),
            std=float(parameters["detector_std"]),
            strides=tuple(int(s) for s in parameters["detector_strides"].split(",")),
            anchors=int(parameters["detector_anchors_per_position"]),
            nms_iou=float(parameters["detector_nms_iou_threshold"]),
        )
        recognizer = RecognizerContract(
            mean=float(parameters["recognizer_mean"]),
            std=float(parameters["recognizer_std"]),
            embedding_size=int(parameters["recognizer_embedding_size"]),
        )
    except KeyError as error:
        raise ValueError(f"config parameter {error} is missing: run `mt-photos-triton export faces`") from error
    return detector, recognizer
