"""Smart search routes: `POST /clip/img` (multipart `file`) and `POST /clip/txt` (JSON `{"text": ...}`).

Both answer `{"result": ["0.0123456700000000", ...]}` (one string per dimension, in the number format of the
served CLIP profile, adapter/wire.py `clip_strings`) from the Triton ensembles `clip_image` / `clip_text`; failures are HTTP 200 `msg` bodies, except a
`/clip/txt` body that is not `{"text": "<string>"}`, which gets the reference framework's 422.
"""

from __future__ import annotations

import email.message
import json
from typing import Any

import numpy as np
from litestar import Request, Response, post

from adapter.deps import Inference
from adapter.inference import Answer, Outputs, Route
from adapter.responses import validation_error
from adapter.schemas import CLIP_ANSWER, TEXT_BODY, UPLOAD_BODY, inference_operation
from adapter.wire import clip_strings
from mt_photos_triton.families import CLIP_IMAGE_MODEL, CLIP_TEXT_MODEL
from mt_photos_triton.pipelines.images import CLIP_LIMITS

EMBEDDING = "embedding"
IMAGE = Route("/clip/img", CLIP_IMAGE_MODEL, (EMBEDDING,), limits=CLIP_LIMITS)
TEXT = Route("/clip/txt", CLIP_TEXT_MODEL, (EMBEDDING,))
NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from"


def embedding(inference: Inference, route: Route) -> Answer:
    """The answer of `route`: its first embedding in the number format its entry model's config records."""

    async def answer(outputs: Outputs) -> dict[str, list[str]]:
        return {"result": clip_strings(outputs[EMBEDDING][0], await inference.served.number_format(route.model))}

    return answer


def declares_json(content_type: str | None) -> bool:
    """Whether the body is read as JSON: `application/json` or `application/*+json`, as FastAPI (>= 0.132,
    `strict_content_type`) decides; no Content-Type, text/plain or a form is not JSON."""
    if not content_type:
        return False
    header = email.message.Message()
    header["content-type"] = content_type
    if header.get_content_maintype() != "application":
        return False
    subtype = header.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def text_from_body(body: bytes, content_type: str | None) -> str | Response[bytes]:
    """`text` of a `{"text": "..."}` body, or the 422 the reference's pydantic model gives for it."""
    if not body:
        return validation_error("missing", ["body"], "Field required", None)
    if not declares_json(content_type):
        # the reference validates the raw body (as text) against its model; it answers invalid UTF-8 with a 500,
        # we replace what cannot be decoded
        return validation_error("model_attributes_type", ["body"], NOT_AN_OBJECT, body.decode(errors="replace"))
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        position = error.pos if isinstance(error, json.JSONDecodeError) else 0
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "invalid UTF-8"
        return validation_error("json_invalid", ["body", position], "JSON decode error", {}, ctx={"error": reason})
    if not isinstance(payload, dict):
        return validation_error("model_attributes_type", ["body"], NOT_AN_OBJECT, payload)
    if "text" not in payload:
        return validation_error("missing", ["body", "text"], "Field required", payload)
    text = payload["text"]
    if not isinstance(text, str):
        return validation_error("string_type", ["body", "text"], "Input should be a valid string", text)
    return text


@post("/clip/img", status_code=200, operation_class=inference_operation(UPLOAD_BODY, CLIP_ANSWER))
async def clip_img(request: Request[Any, Any, Any], inference: Inference) -> Response[bytes]:
    return await inference.image(request, IMAGE, embedding(inference, IMAGE))


@post("/clip/txt", status_code=200, operation_class=inference_operation(TEXT_BODY, CLIP_ANSWER))
async def clip_txt(request: Request[Any, Any, Any], inference: Inference) -> Response[bytes]:
    text = text_from_body(await request.body(), request.headers.get("content-type"))
    if isinstance(text, Response):
        return text
    # a lone surrogate ("\ud800" is valid JSON) has no UTF-8 form: it becomes "?" rather than a 500
    data = text.encode("utf-8", errors="replace")
    return await inference.run(request, TEXT, {"text": np.array([[data]], dtype=np.object_)}, embedding(inference, TEXT))


HANDLERS = [clip_img, clip_txt]
