"""Shapes of the answers, for the OpenAPI schema (bodies themselves are written as exact bytes by responses.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi import ResponseSpec


@dataclass
class Detail:
    """A framework error: 401 wrong key, 404, 405, 413."""

    detail: str


@dataclass
class ValidationDetail:
    """422: a missing multipart part or JSON field, as the reference's framework words it."""

    detail: list[dict[str, Any]]


@dataclass
class ErrorBody:
    """A failure inside a route: HTTP 200 with an empty result and a short fixed message."""

    result: list[Any]
    msg: str


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
VALIDATION = {422: ResponseSpec(ValidationDetail, description="missing part or field")}


def answers(success: Any) -> dict[int, ResponseSpec]:
    """Responses of a protected route whose 200 is `success` (or, for inference routes, `success | ErrorBody`)."""
    return {200: ResponseSpec(success, description="the answer"), **UNAUTHORIZED}
