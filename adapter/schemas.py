"""Shapes of the answers, for the OpenAPI schema (bodies themselves are written as exact bytes by responses.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.openapi.spec import OpenAPIResponse


@dataclass
class Detail:
    """A framework error: 401 wrong key, 404, 405, 413."""

    detail: str


@dataclass
class CheckBody:
    result: str
    title: str
    help: str
    detector_backend: str
    recognition_model: str
    facial_min_score: float
    facial_max_distance: float
    env_use_dml: bool


@dataclass
class PassBody:
    result: str


UNAUTHORIZED = {401: ResponseSpec(Detail, description="wrong or missing api-key header")}


def answers(success: Any) -> dict[int, ResponseSpec]:
    """Responses of a protected core route whose 200 is `success` (inference routes: `inference_operation`)."""
    return {200: ResponseSpec(success, description="the answer"), **UNAUTHORIZED}


# --- request bodies and answers of the inference routes -----------------------------------------------------
# The routes read multipart/JSON themselves (to answer missing parts exactly as the reference does), so
# Litestar cannot infer their request bodies: each route names an Operation class that documents them.

_STRING = Schema(type=OpenAPIType.STRING)
_NUMBER = Schema(type=OpenAPIType.NUMBER)
_INTEGER = Schema(type=OpenAPIType.INTEGER)


def _object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return Schema(type=OpenAPIType.OBJECT, properties=properties, required=required or sorted(properties))


def _array(items: Schema) -> Schema:
    return Schema(type=OpenAPIType.ARRAY, items=items)


ERROR_SCHEMA = _object({"result": Schema(type=OpenAPIType.ARRAY, max_items=0), "msg": _STRING})
DETAIL_SCHEMA = _object({"detail": _STRING})
VALIDATION_SCHEMA = _object({"detail": _array(Schema(type=OpenAPIType.OBJECT))})
UPLOAD_BODY = RequestBody(
    required=True,
    content={
        "multipart/form-data": OpenAPIMediaType(
            schema=_object({"file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)})
        )
    },
)
TEXT_BODY = RequestBody(required=True, content={"application/json": OpenAPIMediaType(schema=_object({"text": _STRING}))})

CLIP_ANSWER = _object({"result": _array(_STRING)})
OCR_ANSWER = _object(
    {
        "result": _object(
            {
                "texts": _array(_STRING),
                "scores": _array(_STRING),
                "boxes": _array(_object({k: _STRING for k in ("x", "y", "width", "height")})),
            }
        )
    }
)
REPRESENT_ANSWER = _object(
    {
        "detector_backend": _STRING,
        "recognition_model": _STRING,
        "result": _array(
            _object(
                {
                    "embedding": _array(_NUMBER),
                    "facial_area": _object({k: _INTEGER for k in ("x", "y", "w", "h")}),
                    "face_confidence": _NUMBER,
                }
            )
        ),
    }
)


def _json(schema: Schema, description: str) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content={"application/json": OpenAPIMediaType(schema=schema)})


def inference_operation(body: RequestBody, answer: Schema) -> type[Operation]:
    """An Operation documenting `body`, and 200 = `answer` or the spec's error body, 401 and 422."""

    @dataclass
    class InferenceOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body
            self.responses = {
                "200": _json(Schema(any_of=[answer, ERROR_SCHEMA]), "the answer, or the spec's error body"),
                "401": _json(DETAIL_SCHEMA, "wrong or missing api-key header"),
                "413": _json(DETAIL_SCHEMA, "request body too large"),
                "422": _json(VALIDATION_SCHEMA, "missing part or field"),
            }

    return InferenceOperation
