"""`POST /predict` in immich's machine-learning protocol, on the Triton models the MT Photos routes use.

immich's server sends multipart `entries` (JSON `{task: {type: {"modelName", "options"}}}`) and one of `image`
(the asset's preview) or `text`; each task is one call of one of our entry models, through the adapter's one
inference path (header probe, pixel budget, in-flight bound, error map). Answers are immich-ml v2.5.6's
(machine-learning/immich_ml/main.py `predict`, models/*), serialised as its orjson does (adapter/wire.py).
Off unless IMMICH_ML=true (a 404 then), limited to IMMICH_ML_ALLOW's networks when set: immich sends no key.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from litestar import Request, Response, post
from litestar.datastructures import UploadFile

from adapter.deps import AppSettings, Inference
from adapter.inference import Outputs, Route
from adapter.metrics import OK, record_outcome
from adapter.wire import immich_clip, immich_faces, immich_ocr, orjson_bytes
from mt_photos_triton.families import CLIP_IMAGE_MODEL, CLIP_TEXT_MODEL, FACES_MODEL, FAMILIES, OCR_MODEL
from mt_photos_triton.pipelines.images import CLIP_LIMITS, FACES_LIMITS, OCR_LIMITS

log = logging.getLogger(__name__)

PATH = "/predict"
CLIP_TASK, FACES_TASK, OCR_TASK = "clip", "facial-recognition", "ocr"
VISUAL, TEXTUAL, DETECTION, RECOGNITION = "visual", "textual", "detection", "recognition"
# immich-ml's default where a request gives no detection minScore (models/facial_recognition/detection.py:16)
FACE_MIN_SCORE = 0.7
OCR_SCORE_MODE = "fast"  # the only DB score mode served (immich's default; its server never sends another)
OCR_LANGUAGE = "CH"  # immich's OCR recogniser default language (models/ocr/recognition.py:28)

# immich's texts (main.py) and ours in its `{"detail": ...}` shape
NO_INPUT = "Either image or text must be provided"
BAD_ENTRIES = "Invalid request format."
FORBIDDEN = "Forbidden"
INVALID_IMAGE = "Invalid image."
TOO_LARGE = "Image too large."
BUSY = "Server busy, retry later."
UNAVAILABLE = "Inference server unavailable."
INTERNAL = "Internal Server Error"
STATUS = {  # the inference path's failure reasons → status and detail of immich's shape (None: the path's text)
    "invalid_image": (422, INVALID_IMAGE), "too_large": (413, TOO_LARGE), "busy": (503, BUSY),
    "server_unavailable": (503, UNAVAILABLE), "model_unavailable": (503, None), "invalid_input": (422, BAD_ENTRIES),
}

CLIP_OUTPUTS = ("embedding",)
FACES_OUTPUTS = ("boxes", "scores", "embeddings", "count")
OCR_OUTPUTS = ("texts", "scores", "boxes", "count", "box_scores", "reading_order", "image_size")
ROUTES = {
    (CLIP_TASK, VISUAL): Route(PATH, CLIP_IMAGE_MODEL, CLIP_OUTPUTS, limits=CLIP_LIMITS),
    (CLIP_TASK, TEXTUAL): Route(PATH, CLIP_TEXT_MODEL, CLIP_OUTPUTS),
    (FACES_TASK, DETECTION): Route(PATH, FACES_MODEL, FACES_OUTPUTS, limits=FACES_LIMITS),
    (OCR_TASK, DETECTION): Route(PATH, OCR_MODEL, OCR_OUTPUTS, limits=OCR_LIMITS),
}
# the types each task is asked with, as immich's server sends them (recognition depends on detection)
TASK_TYPES = {CLIP_TASK: ({VISUAL}, {TEXTUAL}), FACES_TASK: ({DETECTION, RECOGNITION},),
              OCR_TASK: ({DETECTION, RECOGNITION},)}


class Refused(Exception):
    """A request answered with `status` and immich's `{"detail": ...}` body."""

    def __init__(self, status: int, detail: str, reason: str = "bad_request") -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason


@dataclass(frozen=True)
class Task:
    """One task of `entries`: its types' model names and options."""

    name: str
    models: dict[str, str]  # type → modelName
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # type → options

    @property
    def route(self) -> Route:
        kind = VISUAL if VISUAL in self.models else TEXTUAL if TEXTUAL in self.models else DETECTION
        return ROUTES[(self.name, kind)]

    @property
    def needs_text(self) -> bool:
        return TEXTUAL in self.models

    def option(self, kind: str, key: str) -> Any:
        return self.options.get(kind, {}).get(key)


def parse_entries(raw: Any) -> list[Task]:
    """The tasks of an `entries` field, or Refused: not JSON or not immich's shape → 422 "Invalid request
    format." (main.py `get_entries`); an unknown task or type too (immich answers those with a 500)."""
    try:
        request = json.loads(raw)
        tasks = [_task(name, types) for name, types in request.items()]
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        log.info("%s: invalid entries (%s)", PATH, type(error).__name__)
        raise Refused(422, BAD_ENTRIES) from None
    if not tasks:
        raise Refused(422, BAD_ENTRIES)
    return tasks


def _task(name: str, types: Mapping[str, Any]) -> Task:
    if name not in TASK_TYPES:
        raise ValueError(f"unknown task {name!r}")
    models: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    for kind, entry in types.items():
        model = entry["modelName"]
        given = entry.get("options") or {}
        if not isinstance(model, str) or not isinstance(given, dict):
            raise ValueError("modelName must be a string and options an object")
        models[kind], options[kind] = model, given
    if set(models) not in [set(kinds) for kinds in TASK_TYPES[name]]:
        if set(models) == {RECOGNITION}:  # immich main.py `_run_inference`: the dependency is missing
            raise Refused(400, f"Task {name} of type {RECOGNITION} depends on output of {DETECTION}")
        raise ValueError(f"types {sorted(models)} of {name}")
    return Task(name, models, options)


def clean_name(name: str) -> str:
    """immich-ml config.py `clean_name`: the part after the last "/", ":" "\\" "/" as "_", dots dropped."""
    return name.split("/")[-1].translate(str.maketrans(":\\/", "___", "."))


def requested_models(task: Task) -> set[str]:
    """The model names a task asks for, as immich-ml resolves them (OCR: `<language>__<model>`, CH the default)."""
    names = {clean_name(name) for name in task.models.values()}
    if task.name == OCR_TASK:
        names = {name.removeprefix(f"{OCR_LANGUAGE}__") for name in names}
    return names


def refuse_other_model(task: Task, served: str) -> None:
    """One model a family is served: a request for another one is refused (its vectors would not be
    comparable with what immich indexed), naming the served one and the command that serves the asked one."""
    others = sorted(requested_models(task) - {served})
    if others:
        family = "faces" if task.name == FACES_TASK else task.name
        raise Refused(
            400,
            f"model '{others[0]}' is not served here ({family}: '{served}'); serve it with "
            f"`{FAMILIES[family].export_command} --model {others[0]}` or set immich to '{served}'",
            reason="other_model",
        )


def number(task: Task, kind: str, key: str, default: float | None = None) -> float | None:
    value = task.option(kind, key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused(422, BAD_ENTRIES)
    return float(value)


def task_inputs(task: Task) -> dict[str, np.ndarray]:
    """The optional model inputs immich's options set (besides the image or text)."""
    if task.name == FACES_TASK:
        return {"min_score": np.array([[number(task, DETECTION, "minScore", FACE_MIN_SCORE)]], dtype=np.float32)}
    if task.name == OCR_TASK:
        mode = task.option(DETECTION, "scoreMode")
        if mode is not None and mode != OCR_SCORE_MODE:
            raise Refused(400, f"OCR detection scoreMode {str(mode)[:20]!r} is not served (only '{OCR_SCORE_MODE}')")
        inputs = {}
        for name, kind, key, dtype in (("box_threshold", DETECTION, "minScore", np.float32),
                                       ("max_resolution", DETECTION, "maxResolution", np.int32),
                                       ("min_text_score", RECOGNITION, "minScore", np.float32)):
            value = number(task, kind, key)
            if value is not None:
                if dtype is np.int32 and not value.is_integer():
                    raise Refused(422, BAD_ENTRIES)
                inputs[name] = np.array([[value]], dtype=dtype)
        return inputs
    return {}


def answer_of(task: Task) -> Callable[[Outputs], Any]:
    if task.name == CLIP_TASK:
        return immich_clip
    return immich_faces if task.name == FACES_TASK else immich_ocr


def allowed(settings: Any, host: str | None) -> bool:
    """Whether a client address may use /predict: anyone without IMMICH_ML_ALLOW, else its networks only."""
    networks = settings.immich_ml_networks
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def refused(request: Request[Any, Any, Any], error: Refused) -> Response[bytes]:
    record_outcome(request.scope, error.reason)
    return Response(content=orjson_bytes({"detail": error.detail}), status_code=error.status,
                    media_type="application/json")


async def read_form(request: Request[Any, Any, Any]) -> tuple[Any, bytes | None, str | None]:
    """`entries`, the `image` bytes and the `text` of the multipart body (each None when absent)."""
    try:
        form = await request.form()
    except Exception:  # noqa: BLE001 - a body that is not multipart carries no fields
        return None, None, None
    entries, image, text = form.get("entries"), form.get("image"), form.get("text")
    if isinstance(image, UploadFile):
        image = await image.read()
    elif isinstance(image, str):
        image = image.encode()
    return entries, image, text if isinstance(text, str) else None


@post(PATH, status_code=200, include_in_schema=True)
async def predict(request: Request[Any, Any, Any], inference: Inference, settings: AppSettings) -> Response[bytes]:
    """immich's `/predict`: the answer of every task of `entries`, plus the image's size for an image."""
    try:
        if not allowed(settings, request.client.host if request.client else None):
            raise Refused(403, FORBIDDEN, reason="forbidden")
        raw_entries, image, text = await read_form(request)
        if raw_entries is None:
            raise Refused(422, BAD_ENTRIES)
        tasks = parse_entries(raw_entries)
        if image is None and text is None:
            raise Refused(400, NO_INPUT)
        for task in tasks:  # immich-ml reads the image when both come (main.py `predict`)
            if task.needs_text != (image is None):
                raise Refused(400, f"{task.name} {'/'.join(task.models)} needs {'text' if task.needs_text else 'an image'}")
            refuse_other_model(task, await inference.served.name(task.route.model))
        runs = [_run(inference, task, image, text) for task in tasks]
        results = await asyncio.gather(*runs, return_exceptions=True)
    except Refused as error:
        return refused(request, error)
    body: dict[str, Any] = {}
    for task, result in zip(tasks, results):
        if isinstance(result, Refused):
            return refused(request, result)
        if isinstance(result, BaseException):
            return refused(request, _failure(inference, task, result))
        body[task.name], size = result
        if size is not None:
            body["imageHeight"], body["imageWidth"] = size[1], size[0]
    record_outcome(request.scope, OK)
    return Response(content=orjson_bytes(body), status_code=200, media_type="application/json")


async def _run(inference: Any, task: Task, image: bytes | None, text: str | None) -> tuple[Any, tuple[int, int] | None]:
    """One task through the inference path: (its answer, the image's (width, height) or None for text)."""
    route, inputs, answer = task.route, task_inputs(task), answer_of(task)
    if image is not None:
        info, outputs = await inference.infer_image(image, route, inputs)
        return answer(outputs), (info.width, info.height)
    feeds = {"text": np.array([[text.encode("utf-8", errors="replace")]], dtype=np.object_)}  # type: ignore[union-attr]
    language = task.option(TEXTUAL, "language")
    if isinstance(language, str):
        feeds["language"] = np.array([[language.encode("utf-8", errors="replace")]], dtype=np.object_)
    return answer(await inference.infer(route, feeds)), None


def _failure(inference: Any, task: Task, error: BaseException) -> Refused:
    """The inference path's failure (mapped and logged once there) in immich's status and shape."""
    if not isinstance(error, Exception):
        raise error
    failure = inference.note_failure(task.route, error)
    status, detail = STATUS.get(failure.reason, (500, INTERNAL))  # invalid_input: the model refused an option
    return Refused(status, detail or failure.msg, reason=failure.reason)


HANDLERS: list[Any] = [predict]
