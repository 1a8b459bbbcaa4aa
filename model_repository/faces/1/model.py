"""`faces`: image bytes + min score → boxes, scores, landmarks and ArcFace embeddings of every face (BLS).

Per execute: every image of every request is decoded and letterboxed, ONE `face_det` call takes them all
(chunked by its max batch), the faces are decoded and aligned, and ONE `face_rec` call embeds every face of
every image. A request carrying B images gets outputs [B, N, ...] padded to its largest face count N, with
`count` [B, 1] saying how many rows of each image are real. A bad image fails its own request only.
The maths lives in mt_photos_triton.pipelines.faces; the contract comes from this config's parameters.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines import faces as pipeline


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def _error(message: str) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        parameters = _parameters(json.loads(args["model_config"]))
        self.detector, self.recognizer = pipeline.contracts_from_parameters(parameters)
        self.decoder = pipeline.ScrfdDecoder(self.detector)
        self.detector_model = parameters["detector_model"]
        self.detector_max_batch = int(parameters["detector_max_batch"])
        self.recognizer_model = parameters["recognizer_model"]
        self.recognizer_max_batch = int(parameters["recognizer_max_batch"])

    def _infer(self, model: str, name: str, array: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        """One BLS call; its error becomes an exception here, checked on the response just received."""
        request = pb_utils.InferenceRequest(
            model_name=model, requested_output_names=outputs, inputs=[pb_utils.Tensor(name, array)]
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in outputs}

    def _detect(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        names = self.detector.output_names
        chunks = [
            self._infer(self.detector_model, "image", blob[start : start + self.detector_max_batch], names)
            for start in range(0, len(blob), self.detector_max_batch)
        ]
        return {name: np.concatenate([c[name] for c in chunks]) for name in names}

    def _embed(self, blob: np.ndarray) -> np.ndarray:
        chunks = [
            self._infer(self.recognizer_model, "image", blob[start : start + self.recognizer_max_batch], ["embedding"])
            for start in range(0, len(blob), self.recognizer_max_batch)
        ]
        return np.concatenate([c["embedding"] for c in chunks])

    def _read(self, request: Any) -> tuple[list[np.ndarray], list[float]]:
        """The request's decoded images and min scores, or PipelineError for the whole request."""
        data = pb_utils.get_input_tensor_by_name(request, "image_bytes")
        scores = pb_utils.get_input_tensor_by_name(request, "min_score")
        if data is None or scores is None:
            raise PipelineError(INVALID_INPUT, "inputs image_bytes and min_score are required")
        blobs, min_scores = data.as_numpy().reshape(-1), scores.as_numpy().reshape(-1)
        if len(blobs) != len(min_scores):
            raise PipelineError(INVALID_INPUT, f"{len(blobs)} images but {len(min_scores)} min scores")
        images = [pipeline.decode_image(bytes(blob)) for blob in blobs]
        return images, [float(s) for s in min_scores]

    def _respond(self, results: list[pipeline.ImageFaces]) -> Any:
        batch, most = len(results), max((len(r.faces) for r in results), default=0)
        size = self.recognizer.embedding_size
        boxes = np.zeros((batch, most, 4), np.float32)
        scores = np.zeros((batch, most), np.float32)
        landmarks = np.zeros((batch, most, pipeline.LANDMARKS, 2), np.float32)
        embeddings = np.zeros((batch, most, size), np.float32)
        count = np.zeros((batch, 1), np.int32)
        for index, result in enumerate(results):
            found = len(result.faces)
            boxes[index, :found] = result.faces.boxes
            scores[index, :found] = result.faces.scores
            landmarks[index, :found] = result.faces.landmarks
            embeddings[index, :found] = result.embeddings
            count[index, 0] = found
        outputs = {"boxes": boxes, "scores": scores, "landmarks": landmarks, "embeddings": embeddings, "count": count}
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in outputs.items()])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        accepted: list[tuple[int, list[np.ndarray], list[float]]] = []
        for index, request in enumerate(requests):
            try:
                images, min_scores = self._read(request)
            except PipelineError as error:
                responses[index] = _error(str(error))
                continue
            accepted.append((index, images, min_scores))

        images = [image for _, request_images, _ in accepted for image in request_images]
        min_scores = [score for _, _, request_scores in accepted for score in request_scores]
        try:
            results = pipeline.represent(
                images, min_scores, self.detector, self.recognizer, self._detect, self._embed, self.decoder
            )
        except Exception as error:  # noqa: BLE001 - a failed inference is the error of these requests only
            for index, _, _ in accepted:
                responses[index] = _error(f"faces: inference failed: {error}")
            return responses
        start = 0
        for index, request_images, _ in accepted:
            responses[index] = self._respond(results[start : start + len(request_images)])
            start += len(request_images)
        return responses
