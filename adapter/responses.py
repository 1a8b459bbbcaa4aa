"""Responses in the reference's exact bytes: compact JSON, the spec's `msg` body and the framework's 422."""

from __future__ import annotations

import json
from typing import Any

from litestar import Response

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


def validation_error(kind: str, loc: list[str | int], msg: str, value: Any, **extra: Any) -> Response[bytes]:
    """One error in FastAPI/pydantic's 422 body shape, as the reference's framework answers a bad request."""
    detail = {"type": kind, "loc": loc, "msg": msg, "input": value, **extra}
    return json_response({"detail": [detail]}, status_code=422)


def missing_field(field: str, value: Any = None) -> Response[bytes]:
    """The 422 body the reference's framework (FastAPI/pydantic) gives for a missing field."""
    return validation_error("missing", ["body", field], "Field required", value)
