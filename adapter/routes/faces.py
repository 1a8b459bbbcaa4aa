"""`POST /represent`: every face of the upload with its ArcFace embedding, box and score (the `faces` model)."""

from __future__ import annotations

from typing import Any

import numpy as np
from litestar import Request, Response, post
from numpy.typing import NDArray

from adapter.backend import BackendError
from adapter.deps import AppSettings, Backend
from adapter.responses import (
    MSG_INVALID_FACE_IMAGE,
    backend_error_response,
    json_response,
    pipeline_error_response,
    read_upload,
)
from adapter.schemas import REPRESENT_ANSWER, UPLOAD_BODY, inference_operation
from adapter.settings import Settings
from mt_photos_triton.errors import PipelineError
from mt_photos_triton.families import FACES_MODEL
from mt_photos_triton.pipelines.faces import facial_area
from mt_photos_triton.pipelines.images import probe

DETECTOR_BACKEND = "insightface"
OUTPUTS = ("boxes", "scores", "embeddings", "count")


def embedding_numbers(embedding: NDArray[np.float32]) -> list[float]:
    """Each float32 as its shortest round-trip decimal, read back as a float64 (so JSON prints `0.33333334`,
    not `0.3333333432674408`), as the reference serialises it."""
    return [float(text) for text in embedding.astype(np.float32).astype(str)]


def represent_body(outputs: dict[str, NDArray[Any]], settings: Settings) -> dict[str, Any]:
    """The reference's JSON for the first image of a `faces` answer (faces best score first)."""
    found = int(outputs["count"][0, 0])
    faces = [
        {
            "embedding": embedding_numbers(outputs["embeddings"][0, index]),
            "facial_area": facial_area(outputs["boxes"][0, index]),
            "face_confidence": float(outputs["scores"][0, index]),
        }
        for index in range(found)
    ]
    return {
        "detector_backend": DETECTOR_BACKEND,
        "recognition_model": settings.face_recognition_model_name,
        "result": faces,
    }


@post("/represent", status_code=200, operation_class=inference_operation(UPLOAD_BODY, REPRESENT_ANSWER))
async def represent(request: Request[Any, Any, Any], backend: Backend, settings: AppSettings) -> Response[bytes]:
    data = await read_upload(request)
    if isinstance(data, Response):
        return data
    try:
        probe(data)  # size and format from the header, before anything is decoded
    except PipelineError as error:
        return pipeline_error_response(error, invalid_image_msg=MSG_INVALID_FACE_IMAGE)
    inputs = {
        "image_bytes": np.array([[data]], dtype=np.object_),
        "min_score": np.array([[settings.face_min_score]], dtype=np.float32),
    }
    try:
        outputs = await backend.infer(FACES_MODEL, inputs, OUTPUTS)
    except BackendError as error:
        return backend_error_response(error, invalid_image_msg=MSG_INVALID_FACE_IMAGE, route="/represent")
    return json_response(represent_body(outputs, settings))


HANDLERS: list[Any] = [represent]
