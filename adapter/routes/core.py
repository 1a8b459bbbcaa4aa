"""The routes around inference: status page, `/ping`, `/check`, the restart no-ops, health and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Response, get, post
from litestar.datastructures import State

from adapter.backend import BackendUnavailable, ModelState
from adapter.deps import AppSettings, Backend, Inference
from adapter.responses import json_response
from adapter.schemas import CheckBody, PassBody, answers
from adapter.wire import DETECTOR_BACKEND
from mt_photos_triton.families import FACES_MODEL, FAMILIES

STATUS_PAGE = """<!DOCTYPE html>
<html lang="zh-CN">
<head><meta charset="UTF-8"><title>MT Photos AI Server (Triton)</title></head>
<body style="text-align:center;font-family:sans-serif">
<p style="font-weight:600">MT Photos智能识别服务 · mt-photos-triton</p>
<p>服务状态： 运行中 (service running)</p>
<p>Health: <a href="/health/ready">/health/ready</a></p>
</body>
</html>"""

CHECK_TITLE = "mt-photos-ai服务"
CHECK_HELP = "https://mtmt.tech/docs/advanced/ocr_api"
FACIAL_MAX_DISTANCE = 0.5
READY = "READY"


@get("/", media_type="text/html", include_in_schema=False)
async def index() -> str:
    return STATUS_PAGE


@get("/ping", media_type="text/plain", include_in_schema=False)
async def ping() -> str:
    """immich's health route, which the reference keeps (health checks written for it poll it): `pong`."""
    return "pong"


@post("/check", status_code=200, responses=answers(CheckBody))
async def check(settings: AppSettings, inference: Inference) -> Response[bytes]:
    return json_response(
        {
            "result": "pass",
            "title": CHECK_TITLE,
            "help": CHECK_HELP,
            "detector_backend": DETECTOR_BACKEND,
            "recognition_model": await inference.served.name(FACES_MODEL),
            "facial_min_score": settings.face_min_score,
            "facial_max_distance": FACIAL_MAX_DISTANCE,
            "env_use_dml": False,
        }
    )


@post(["/restart", "/restart_v2"], status_code=200, responses=answers(PassBody))
async def restart() -> Response[bytes]:
    # Nothing to free: models live in Triton. MT Photos calls this between OCR jobs.
    return json_response({"result": "pass"})


@get("/health/live", include_in_schema=False)
async def live() -> Response[bytes]:
    return json_response({"status": "live"})


def family_states(states: list[ModelState], missing: Mapping[str, str]) -> dict[str, str]:
    loaded = {s.name: s for s in states}
    found = {}
    for name, family in FAMILIES.items():
        if all(m in loaded and loaded[m].state == READY for m in family.entry_models):
            found[name] = "ready"
        elif reasons := [missing[m] for m in family.entry_models if m in missing]:
            found[name] = f"incomplete ({reasons[0]}): run `{family.export_command}`"
        else:
            found[name] = f"not exported: run `{family.export_command}`"
    return found


@get("/health/ready", include_in_schema=False)
async def ready(backend: Backend, inference: Inference, state: State) -> Response[bytes]:
    """200 when the server is ready, every model it was asked to load is READY and no family is exported in
    part; 503 naming what is not (a missing file by its path in the repository, from serve's scan)."""
    unavailable = json_response({"status": "not ready", "server": "unavailable"}, status_code=503)
    if not await backend.server_ready():
        inference.served.forget()  # a server that comes back may serve another export
        return unavailable
    try:
        states = await backend.models()
    except BackendUnavailable:
        return unavailable
    missing: Mapping[str, str] = state.missing
    loaded = {s.name: s for s in states if s.state}
    failed = {name: f"{s.state}: {s.reason}".rstrip(": ") for name, s in loaded.items() if s.state != READY}
    failed.update(missing)
    body: dict[str, Any] = {
        "status": "ready" if not failed else "not ready",
        "server": "ready",
        "models": {name: s.state for name, s in sorted(loaded.items())},
        "families": family_states(states, missing),
    }
    if failed:
        body["failed"] = dict(sorted(failed.items()))
    return json_response(body, status_code=503 if failed else 200)


@get("/metrics", include_in_schema=False)
async def metrics_route(backend: Backend, state: State) -> Response[bytes]:
    body, content_type = state.metrics.render(backend.health())
    return Response(content=body, media_type=content_type)


PUBLIC = [index, ping, live, ready, metrics_route]
PROTECTED = [check, restart]
