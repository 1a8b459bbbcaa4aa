"""`faces`: image bytes + min score → boxes, scores, landmarks and ArcFace embeddings of every face (BLS).

Per execute: every image of every request is decoded and letterboxed, ONE `face_det` call takes them all
(chunked by its max batch), the faces are decoded and aligned, and ONE `face_rec` call embeds every face of
every image. A request carrying B images gets outputs [B, N, ...] padded to its largest face count N, with
`count` [B, 1] saying how many rows of each image are real. A bad image fails its own request only.
The maths lives in mt_photos_triton.pipelines.faces; the contract comes from this config's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines import faces as pipeline
from mt_photos_triton.triton.answers import Answers, split
from mt_photos_triton.triton.parameters import ModelConfig
from mt_photos_triton.triton.python_backend import infer, input_array, respond
from mt_photos_triton.triton.rows import map_rows


def _read(request: Any) -> tuple[list[np.ndarray], list[float]]:
    """The request's decoded images and min scores, or PipelineError for the whole request."""
    blobs, min_scores = input_array(request, "image_bytes").reshape(-1), input_array(request, "min_score").reshape(-1)
    if len(blobs) != len(min_scores):
        raise PipelineError(INVALID_INPUT, f"{len(blobs)} images but {len(min_scores)} min scores")
    return [pipeline.decode_image(bytes(blob)) for blob in blobs], [float(s) for s in min_scores]


def _outputs(results: Sequence[pipeline.ImageFaces], embedding_size: int) -> dict[str, np.ndarray]:
    """One request's images' faces, padded to its largest face count."""
    batch, most = len(results), max((len(r.faces) for r in results), default=0)
    boxes = np.zeros((batch, most, 4), np.float32)
    scores = np.zeros((batch, most), np.float32)
    landmarks = np.zeros((batch, most, pipeline.LANDMARKS, 2), np.float32)
    embeddings = np.zeros((batch, most, embedding_size), np.float32)
    count = np.zeros((batch, 1), np.int32)
    for index, result in enumerate(results):
        found = len(result.faces)
        boxes[index, :found] = result.faces.boxes
        scores[index, :found] = result.faces.scores
        landmarks[index, :found] = result.faces.landmarks
        embeddings[index, :found] = result.embeddings
        count[index, 0] = found
    return {"boxes": boxes, "scores": scores, "landmarks": landmarks, "embeddings": embeddings, "count": count}


def _in_calls(model: str, rows: np.ndarray, outputs: Sequence[str], limit: int) -> dict[str, np.ndarray]:
    """`model` on `rows` (input "image") in calls of at most `limit` rows; a failed call raises its error."""
    (result,) = map_rows([rows], limit, lambda part: infer(model, {"image": part}, outputs))
    if isinstance(result, BaseException):
        raise result
    return result


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = ModelConfig.from_args(args)
        self.name = config.name
        self.detector, self.recognizer = pipeline.contracts_from_parameters(config.parameters)
        self.decoder = pipeline.ScrfdDecoder(self.detector)
        self.detector_model = config.text("detector_model")
        self.detector_max_batch = config.integer("detector_max_batch")
        self.recognizer_model = config.text("recognizer_model")
        self.recognizer_max_batch = config.integer("recognizer_max_batch")

    def _detect(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        return _in_calls(self.detector_model, blob, self.detector.output_names, self.detector_max_batch)

    def _embed(self, blob: np.ndarray) -> np.ndarray:
        return _in_calls(self.recognizer_model, blob, ["embedding"], self.recognizer_max_batch)["embedding"]

    def execute(self, requests: list[Any]) -> list[Any]:
        answers = Answers(self.name, len(requests))
        read = answers.read(requests, _read)
        with answers.guard(read):
            images = [image for request_images, _ in read.values() for image in request_images]
            min_scores = [score for _, request_scores in read.values() for score in request_scores]
            results = pipeline.represent(
                images, min_scores, self.detector, self.recognizer, self._detect, self._embed, self.decoder
            )
            for index, found in zip(read, split(results, [len(request_images) for request_images, _ in read.values()])):
                answers.give(index, _outputs(found, self.recognizer.embedding_size))
        return respond(answers)
