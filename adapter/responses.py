"""Responses in the reference's exact bytes, and the one place errors become `msg` bodies."""

from __future__ import annotations

import json
import logging
from typing import Any

from litestar import Request, Response
from litestar.datastructures import UploadFile

from adapter.backend import BackendError, BackendUnavailable, InferenceFailed, ModelUnavailable, Overloaded
from mt_photos_triton import errors
from mt_photos_triton.families import family_of

log = logging.getLogger(__name__)

JSON = "application/json"

# fixed `msg` texts: never exception text, paths or tracebacks (API spec, "Errors")
MSG_INVALID_IMAGE = "Invalid image format"
MSG_INVALID_FACE_IMAGE = "The uploaded file is not a valid image format or is corrupted."
MSG_TOO_LARGE = "height or width out of range"
MSG_SERVER_UNAVAILABLE = "inference server unavailable"
MSG_BUSY = "server busy, retry later"
MSG_INTERNAL = "internal error"


def json_bytes(body: Any) -> bytes:
    """Compact JSON with raw UTF-8 and Python's float repr, as the reference (FastAPI) writes it."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def json_response(body: Any, status_code: int = 200) -> Response[bytes]:
    return Response(content=json_bytes(body), status_code=status_code, media_type=JSON)


def error_body(msg: str) -> Response[bytes]:
    return json_response({"result": [], "msg": msg})


def missing_field(field: str, value: Any = None) -> Response[bytes]:
    """The 422 body the reference's framework (FastAPI/pydantic) gives for a missing field."""
    detail = [{"type": "missing", "loc": ["body", field], "msg": "Field required", "input": value}]
    return json_response({"detail": detail}, status_code=422)


async def read_upload(request: Request[Any, Any, Any], field: str = "file") -> bytes | Response[bytes]:
    """The bytes of multipart part `field`, or the reference's 422 when it is missing."""
    try:
        form = await request.form()
    except Exception:  # noqa: BLE001 - a body that is not multipart is a missing part
        form = {}
    part = form.get(field) if hasattr(form, "get") else None
    if isinstance(part, UploadFile):
        return await part.read()
    if isinstance(part, str):
        return part.encode()
    return missing_field(field)


def model_missing_msg(model: str) -> str:
    family = family_of(model)
    hint = f": run `{family.export_command}`" if family else ""
    return f"model '{model}' is not available{hint}"


def backend_error_response(
    error: BackendError, *, invalid_image_msg: str = MSG_INVALID_IMAGE, route: str = ""
) -> Response[bytes]:
    """Map one inference failure to the route's `msg` body, and log it once with a short reason."""
    if isinstance(error, ModelUnavailable):
        msg = model_missing_msg(error.model)
    elif isinstance(error, BackendUnavailable):
        msg = MSG_SERVER_UNAVAILABLE
    elif isinstance(error, Overloaded):
        msg = MSG_BUSY
    elif isinstance(error, InferenceFailed) and error.code == errors.INVALID_IMAGE:
        msg = invalid_image_msg
    elif isinstance(error, InferenceFailed) and error.code == errors.IMAGE_TOO_LARGE:
        msg = MSG_TOO_LARGE
    else:
        msg = MSG_INTERNAL
    log.warning("%s failed: %s (%s)", route or "request", msg, error)
    return error_body(msg)


def pipeline_error_response(error: errors.PipelineError, *, invalid_image_msg: str = MSG_INVALID_IMAGE) -> Response[bytes]:
    """A request refused before inference (header check)."""
    if error.code == errors.IMAGE_TOO_LARGE:
        return error_body(MSG_TOO_LARGE)
    return error_body(invalid_image_msg)
