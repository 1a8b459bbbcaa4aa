"""`POST /represent`: every face of the upload with its ArcFace embedding, box and score (the `faces` model)."""

from __future__ import annotations

from typing import Any

import numpy as np
from litestar import Request, Response, post

from adapter.deps import AppSettings, Inference
from adapter.inference import Outputs, Route
from adapter.responses import MSG_INVALID_FACE_IMAGE
from adapter.schemas import REPRESENT_ANSWER, UPLOAD_BODY, inference_operation
from adapter.wire import DETECTOR_BACKEND, faces_result
from mt_photos_triton.families import FACES_MODEL
from mt_photos_triton.pipelines.images import FACES_LIMITS

REPRESENT = Route(
    "/represent", FACES_MODEL, ("boxes", "scores", "embeddings", "count"), limits=FACES_LIMITS,
    invalid_image_msg=MSG_INVALID_FACE_IMAGE,
)


@post("/represent", status_code=200, operation_class=inference_operation(UPLOAD_BODY, REPRESENT_ANSWER))
async def represent(request: Request[Any, Any, Any], inference: Inference, settings: AppSettings) -> Response[bytes]:
    async def body(outputs: Outputs) -> dict[str, Any]:
        return {
            "detector_backend": DETECTOR_BACKEND,
            "recognition_model": await inference.served.name(FACES_MODEL),
            "result": faces_result(outputs),
        }

    min_score = np.array([[settings.face_min_score]], dtype=np.float32)
    return await inference.image(request, REPRESENT, body, inputs={"min_score": min_score})


HANDLERS: list[Any] = [represent]
