"""The Litestar application: `create_app(settings)` wires routes, auth, errors, metrics and the Triton client."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from adapter.backend import InferenceBackend, PooledBackend, TritonBackend, split_urls
from adapter.inference import InferencePath
from adapter.metrics import Metrics, metrics_middleware
from adapter.responses import json_bytes, json_response
from adapter.routes import clip, console, core, faces, immich, ocr
from adapter.served import ServedModels
from adapter.settings import Settings
from mt_photos_triton import __version__

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], InferenceBackend]

API_KEY_SCHEME = "apiKey"


async def require_api_key(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """before_request hook of the protected routes: a wrong or missing key gets the reference's 401. A coroutine:
    Litestar runs a plain function hook in its thread pool, a thread hop on every request."""
    settings: Settings = request.app.state.settings
    given = request.headers.get("api-key", "")
    if hmac.compare_digest(given.encode(), settings.api_auth_key.encode()):
        return None
    return json_response({"detail": "Invalid API key"}, status_code=401)


def http_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Framework errors (404, 405, 413, ...) in the reference's `{"detail": ...}` shape; anything else is a
    logged traceback and a bare 500 (no exception text reaches the client)."""
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        response = json_response({"detail": exc.detail}, status_code=exc.status_code)
        response.headers.update(exc.headers or {})  # e.g. 405's Allow
        return response
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"detail": "Internal Server Error"}, status_code=500)


def body_limit_middleware(limit: int) -> Callable[[Any], Any]:
    """Refuse a declared Content-Length over `limit` before any of the body is read (Litestar's own
    `request_max_body_size` covers chunked bodies, when a handler reads them)."""
    too_large = json_bytes({"detail": "Request Entity Too Large"})

    def wrap(app: Any) -> Any:
        async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                declared = dict(scope["headers"]).get(b"content-length", b"")
                if declared.isdigit() and int(declared) > limit:
                    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(too_large))]
                    await send({"type": "http.response.start", "status": 413, "headers": headers})
                    await send({"type": "http.response.body", "body": too_large})
                    return
            await app(scope, receive, send)

        return middleware

    return wrap


def default_backend(settings: Settings) -> PooledBackend:
    servers = [TritonBackend(url, settings.inference_timeout_s) for url in split_urls(settings.triton_url)]
    return PooledBackend(servers, settings.max_in_flight)


def create_app(
    settings: Settings,
    backend_factory: BackendFactory | None = None,
    missing: Mapping[str, str] | None = None,
    exports: Mapping[str, Mapping[str, str]] | None = None,
) -> Litestar:
    """The app for `settings`. `backend_factory` replaces the Triton client (unit tests hand in a fake);
    `missing` maps entry models to what their family lacks on disk (serve's repository scan, for the families
    exported in part), which readiness reports as not ready; `exports` maps entry models to when and from where
    export made them (the repository's export records), which the console shows."""
    if settings.refuse_default_key and settings.uses_default_key:
        raise ValueError("API_AUTH_KEY is the public default and REFUSE_DEFAULT_KEY is set: set a key of your own")
    make_backend = backend_factory or default_backend
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.uses_default_key:
            log.warning(
                "API_AUTH_KEY is the public default '%s': anyone on the network can use this service; "
                "set API_AUTH_KEY to a secret of your own",
                settings.api_auth_key,
            )
        backend = make_backend(settings)
        app.state.backend = backend
        app.state.inference = InferencePath(settings, backend, ServedModels(backend))
        backend.start()
        try:
            yield
        finally:
            await backend.close()

    def provide(name: str) -> Provide:
        def from_state(state: State) -> Any:
            return state[name]

        return Provide(from_state, sync_to_thread=False)

    protected = Router(
        path="/",
        security=[{API_KEY_SCHEME: []}],
        route_handlers=[*core.PROTECTED, *ocr.HANDLERS, *faces.HANDLERS, *clip.HANDLERS],
        before_request=require_api_key,
    )
    app = Litestar(
        # immich's /predict: no key (immich cannot send one), off unless IMMICH_ML=true (adapter/routes/immich.py)
        route_handlers=[*console.HANDLERS, *core.PUBLIC, *(immich.HANDLERS if settings.immich_ml else []), protected],
        state=State({"settings": settings, "metrics": metrics, "missing": dict(missing or {}),
                     "exports": {name: dict(export) for name, export in (exports or {}).items()}}),
        request_max_body_size=settings.max_body_bytes,
        dependencies={name: provide(name) for name in ("backend", "settings", "inference")},
        exception_handlers={HTTPException: http_exception_handler, Exception: http_exception_handler},
        openapi_config=OpenAPIConfig(
            title="mt-photos-triton",
            version=__version__,
            description="The MT Photos AI API (CLIP, OCR, faces) served by Triton Inference Server",
            components=Components(
                security_schemes={
                    API_KEY_SCHEME: SecurityScheme(type="apiKey", name="api-key", security_scheme_in="header")
                }
            ),
        ),
        lifespan=[lifespan, console.make_lifespan()],
        logging_config=None,
    )
    # Around Litestar's whole handler, not per route: 404/405 answers are counted and limited too.
    app.asgi_handler = metrics_middleware(metrics)(body_limit_middleware(settings.max_body_bytes)(app.asgi_handler))
    return app
