"""Smart search routes: `POST /clip/img` (multipart `file`) and `POST /clip/txt` (JSON `{"text": ...}`).

Both answer `{"result": ["0.0123456700000000", ...]}` (one string per dimension, the reference's number
format) from the Triton ensembles `clip_image` / `clip_text`; failures are HTTP 200 `msg` bodies, except a
`/clip/txt` body that is not `{"text": "<string>"}`, which gets the reference framework's 422.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from litestar import Request, Response, post

from adapter.backend import BackendError
from adapter.deps import Backend
from adapter.schemas import CLIP_ANSWER, TEXT_BODY, UPLOAD_BODY, inference_operation
from adapter.responses import (
    MSG_INTERNAL,
    backend_error_response,
    error_body,
    json_response,
    pipeline_error_response,
    read_upload,
)
from mt_photos_triton.errors import PipelineError
from mt_photos_triton.families import CLIP_IMAGE_MODEL, CLIP_TEXT_MODEL
from mt_photos_triton.pipelines.clip import format_embedding
from mt_photos_triton.pipelines.images import probe

log = logging.getLogger(__name__)

EMBEDDING = "embedding"


def validation_error(kind: str, loc: list[str | int], msg: str, value: Any, **extra: Any) -> Response[bytes]:
    """One error in FastAPI/pydantic's 422 body shape, as the reference answers a bad `/clip/txt` body."""
    detail = {"type": kind, "loc": loc, "msg": msg, "input": value, **extra}
    return json_response({"detail": [detail]}, status_code=422)


def text_from_body(body: bytes) -> str | Response[bytes]:
    """`text` of a `{"text": "..."}` body, or the 422 the reference's pydantic model gives for it."""
    if not body.strip():
        return validation_error("missing", ["body"], "Field required", None)
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        position = error.pos if isinstance(error, json.JSONDecodeError) else 0
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "invalid UTF-8"
        return validation_error("json_invalid", ["body", position], "JSON decode error", {}, ctx={"error": reason})
    if not isinstance(payload, dict):
        return validation_error(
            "model_attributes_type", ["body"], "Input should be a valid dictionary or object to extract fields from",
            payload,
        )
    if "text" not in payload:
        return validation_error("missing", ["body", "text"], "Field required", payload)
    text = payload["text"]
    if not isinstance(text, str):
        return validation_error("string_type", ["body", "text"], "Input should be a valid string", text)
    return text


async def embed(backend: Backend, model: str, inputs: dict[str, np.ndarray], route: str) -> Response[bytes]:
    try:
        outputs = await backend.infer(model, inputs, [EMBEDDING])
    except BackendError as error:
        return backend_error_response(error, route=route)
    except Exception:  # noqa: BLE001 - logged with its traceback; the client gets a fixed message
        log.exception("%s failed", route)
        return error_body(MSG_INTERNAL)
    return json_response({"result": format_embedding(outputs[EMBEDDING][0])})


@post("/clip/img", status_code=200, operation_class=inference_operation(UPLOAD_BODY, CLIP_ANSWER))
async def clip_img(request: Request[Any, Any, Any], backend: Backend) -> Response[bytes]:
    data = await read_upload(request)
    if isinstance(data, Response):
        return data
    try:
        probe(data)  # format and the 10000 px limit from the header, before anything is decoded
    except PipelineError as error:
        return pipeline_error_response(error)
    return await embed(backend, CLIP_IMAGE_MODEL, {"image_bytes": np.array([[data]], dtype=np.object_)}, "/clip/img")


@post("/clip/txt", status_code=200, operation_class=inference_operation(TEXT_BODY, CLIP_ANSWER))
async def clip_txt(request: Request[Any, Any, Any], backend: Backend) -> Response[bytes]:
    text = text_from_body(await request.body())
    if isinstance(text, Response):
        return text
    # a lone surrogate ("\ud800" is valid JSON) has no UTF-8 form: it becomes "?" rather than a 500
    data = text.encode("utf-8", errors="replace")
    return await embed(backend, CLIP_TEXT_MODEL, {"text": np.array([[data]], dtype=np.object_)}, "/clip/txt")


HANDLERS = [clip_img, clip_txt]
