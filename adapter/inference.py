"""The one inference path every route takes: upload → header probe → pixel budget → infer → answer, with every
failure mapped to the route's fixed `msg` body in one place, and the outcome recorded for /metrics.

Failures map as the house's rule says: bad input → the reference's HTTP 200 `msg` body; inference server or
model unavailable → a short message (the health routes say why); anything unexpected → a generic message and a
logged traceback. No exception text reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from litestar import Request, Response
from litestar.datastructures import UploadFile
from numpy.typing import NDArray

from adapter.backend import (
    BackendError,
    BackendUnavailable,
    InferenceBackend,
    InferenceFailed,
    ModelUnavailable,
    Overloaded,
)
from adapter.budget import PixelBudget
from adapter.metrics import BUSY, OK, record_outcome
from adapter.responses import (
    MSG_BUSY,
    MSG_INTERNAL,
    MSG_INVALID_IMAGE,
    MSG_SERVER_UNAVAILABLE,
    MSG_TOO_LARGE,
    error_body,
    json_response,
    missing_field,
)
from adapter.served import ServedModels
from adapter.settings import Settings
from mt_photos_triton import errors
from mt_photos_triton.families import family_of
from mt_photos_triton.pipelines.images import ImageInfo, Limits, probe

log = logging.getLogger(__name__)

Outputs = dict[str, NDArray[Any]]
Answer = Callable[[Outputs], Awaitable[Any]]
UPLOAD_PART = "file"
IMAGE_INPUT = "image_bytes"


@dataclass(frozen=True)
class Route:
    """One inference route: the Triton model it calls, what it reads back, how it refuses bad images."""

    path: str
    model: str
    outputs: tuple[str, ...]
    limits: Limits | None = None  # the header check of an image route (None: not an image route)
    invalid_image_msg: str = MSG_INVALID_IMAGE


@dataclass(frozen=True)
class Failure:
    reason: str  # the outcome label in /metrics
    msg: str  # the client's fixed text


def model_missing_msg(model: str) -> str:
    family = family_of(model)
    hint = f": run `{family.export_command}`" if family else ""
    return f"model '{model}' is not available{hint}"


def failure_of(error: Exception, route: Route) -> Failure:
    """The one mapping of what can go wrong on an inference route to its reason and `msg`."""
    if isinstance(error, errors.PipelineError):  # refused from the header, before inference
        return _code_failure(error.code, route)
    if isinstance(error, InferenceFailed) and error.code is not None:  # the model refused this request
        return _code_failure(error.code, route)
    if isinstance(error, ModelUnavailable):
        return Failure("model_unavailable", model_missing_msg(error.model))
    if isinstance(error, BackendUnavailable):
        return Failure("server_unavailable", MSG_SERVER_UNAVAILABLE)
    if isinstance(error, Overloaded):
        return Failure(BUSY, MSG_BUSY)
    return Failure("internal", MSG_INTERNAL)


def _code_failure(code: str, route: Route) -> Failure:
    if code == errors.INVALID_INPUT:  # the model refused an input's value (immich's per-request options)
        return Failure("invalid_input", MSG_INTERNAL)
    if code == errors.IMAGE_TOO_LARGE:
        return Failure("too_large", MSG_TOO_LARGE)
    if code == errors.INVALID_IMAGE:
        return Failure("invalid_image", route.invalid_image_msg)
    return Failure("internal", MSG_INTERNAL)


async def read_upload(request: Request[Any, Any, Any], field: str = UPLOAD_PART) -> bytes | Response[bytes]:
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


class InferencePath:
    """Created in the app's lifespan with the backend; handlers get it injected as `inference`."""

    def __init__(self, settings: Settings, backend: InferenceBackend, served: ServedModels) -> None:
        self.settings = settings
        self.backend = backend
        self.served = served
        self.budget = PixelBudget(settings.max_pixels_in_flight)

    async def image(
        self, request: Request[Any, Any, Any], route: Route, answer: Answer,
        inputs: Mapping[str, NDArray[Any]] | None = None,
    ) -> Response[bytes]:
        """An upload route: `answer(outputs)` is the success body; `inputs` are sent beside the image bytes."""
        assert route.limits is not None, f"{route.path} is not an image route"
        data = await read_upload(request)
        if isinstance(data, Response):
            return data  # the framework's 422, counted by its status
        try:
            _, outputs = await self.infer_image(data, route, inputs)
            body = await answer(outputs)
        except Exception as error:  # noqa: BLE001 - every failure becomes the route's msg body
            return self.failed(request, route, error)
        record_outcome(request.scope, OK)
        return json_response(body)

    async def infer_image(
        self, data: bytes, route: Route, inputs: Mapping[str, NDArray[Any]] | None = None
    ) -> tuple[ImageInfo, Outputs]:
        """The image's header probe, its turn of the decode budget and the inference: (header, outputs), or the
        exception `failure_of` maps (every image route, immich's `/predict` included, goes through here)."""
        assert route.limits is not None, f"{route.path} is not an image route"
        info = probe(data, route.limits.with_pixels(self.settings.max_image_pixels))
        feeds = {IMAGE_INPUT: np.array([[data]], dtype=np.object_), **(inputs or {})}
        weight = await self._turn(info.pixels)
        try:
            return info, await self.backend.infer(route.model, feeds, route.outputs)
        finally:
            self.budget.release(weight)

    async def infer(self, route: Route, inputs: Mapping[str, NDArray[Any]]) -> Outputs:
        """A route whose inputs are already read: its model's outputs, or the exception `failure_of` maps."""
        return await self.backend.infer(route.model, inputs, route.outputs)

    async def _turn(self, pixels: int) -> int:
        """Wait for `pixels` of the decode budget; Overloaded when no turn comes within the inference timeout."""
        timeout_s = self.settings.inference_timeout_s
        try:
            return await asyncio.wait_for(self.budget.acquire(pixels), timeout=timeout_s)
        except asyncio.TimeoutError as error:
            raise Overloaded(f"{pixels} px waited {timeout_s:.0f} s for the decode budget") from error

    async def run(
        self, request: Request[Any, Any, Any], route: Route, inputs: Mapping[str, NDArray[Any]], answer: Answer
    ) -> Response[bytes]:
        """A route whose inputs are already read (`/clip/txt`)."""
        try:
            body = await answer(await self.infer(route, inputs))
        except Exception as error:  # noqa: BLE001 - every failure becomes the route's msg body
            return self.failed(request, route, error)
        record_outcome(request.scope, OK)
        return json_response(body)

    def failed(self, request: Request[Any, Any, Any], route: Route, error: Exception) -> Response[bytes]:
        """Map, log once, record, and answer the route's `msg` body."""
        failure = self.note_failure(route, error)
        record_outcome(request.scope, failure.reason)
        return error_body(failure.msg)

    def note_failure(self, route: Route, error: Exception) -> Failure:
        """Map, log once, and forget served names the failure may have made stale; the caller answers."""
        failure = failure_of(error, route)
        if failure.reason == "internal" and not isinstance(error, BackendError):
            log.error("%s failed: %s", route.path, failure.msg, exc_info=error)
        else:
            log.warning("%s failed: %s (%s)", route.path, failure.msg, _short(error))
        if isinstance(error, ModelUnavailable):
            self.served.forget(error.model)
        elif isinstance(error, BackendUnavailable):
            self.served.forget()
        return failure


def _short(error: Exception) -> str:
    """A one-line reason for the log (the model's own message, never image bytes)."""
    text = error.detail if isinstance(error, errors.PipelineError) else str(error)
    return text.splitlines()[0][:300] if text else type(error).__name__
