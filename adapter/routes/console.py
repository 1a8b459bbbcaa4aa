"""The console: `GET /` (one self-contained HTML page) and `GET /console/status` (what it shows, as JSON).

Neither needs the key. The status reads the adapter's own Prometheus registry (the figures `/metrics` exposes),
Triton's repository index through the inference backend, and model configs, statistics and the server's version
through a small read-only Triton client opened in the lifespan. The try-it panel of the page calls the MT Photos
routes themselves with the key the user types; nothing here infers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from prometheus_client.core import GaugeMetricFamily

from adapter import console_status
from adapter.backend import BackendUnavailable, ModelState, split_urls
from adapter.responses import json_response
from adapter.settings import Settings
from mt_photos_triton import __version__
from mt_photos_triton.families import family_of
from mt_photos_triton.procfs import descendants, processes, rss_bytes

log = logging.getLogger(__name__)

PAGE_RESOURCE = "static/console.html"
LANG_PLACEHOLDER = 'lang="en" data-lang="en"'
STATUS_TIMEOUT_S = 5.0  # the page polls: a slow Triton must not pile up status calls
TRITON_PROCESS = "tritonserver"


class ModelDescriber(Protocol):
    """Read-only questions to Triton that the inference backend does not ask: configs, statistics, version."""

    async def metadata(self) -> dict[str, Any]: ...

    async def model_config(self, name: str) -> dict[str, Any]: ...

    async def statistics(self) -> dict[str, dict[str, Any]]: ...

    async def close(self) -> None: ...


class TritonDescriber:
    """tritonclient's asyncio HTTP client on the first of the servers that answers."""

    def __init__(self, urls: Sequence[str], timeout_s: float) -> None:
        import tritonclient.http.aio as triton_http

        self.timeout_s = timeout_s
        self._clients = [triton_http.InferenceServerClient(url, conn_timeout=timeout_s) for url in urls]

    async def _ask(self, call: Callable[[Any], Any]) -> Any:
        for client in self._clients:
            try:
                return await asyncio.wait_for(call(client), timeout=self.timeout_s)
            except Exception:  # noqa: BLE001 - the next server, or "unknown" on the page
                continue
        raise BackendUnavailable("no Triton server answered")

    async def metadata(self) -> dict[str, Any]:
        return dict(await self._ask(lambda c: c.get_server_metadata()))

    async def model_config(self, name: str) -> dict[str, Any]:
        return dict(await self._ask(lambda c: c.get_model_config(name)))

    async def statistics(self) -> dict[str, dict[str, Any]]:
        body = await self._ask(lambda c: c.get_inference_statistics(""))
        return {s["name"]: s for s in body.get("model_stats", [])}

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


DescriberFactory = Callable[[Settings], ModelDescriber]


def default_describer(settings: Settings) -> ModelDescriber:
    return TritonDescriber(split_urls(settings.triton_url), min(settings.inference_timeout_s, STATUS_TIMEOUT_S))


# --- memory, exposed in /metrics and read back from the registry like every other figure -----------------------


def triton_rss(parent: int) -> int | None:
    """Resident memory of a Triton server running below `parent` (embedded), with its python-model stubs."""
    names = {process.pid: os.path.basename(process.argv[0]) for process in processes() if process.argv}
    servers = [pid for pid in descendants(parent) if names.get(pid) == TRITON_PROCESS]
    if not servers:
        return None
    members = {member for server in servers for member in (server, *descendants(server))}
    return sum(rss_bytes(pid) or 0 for pid in members)


class MemoryCollector:
    """`mtphotos_memory_bytes{process="adapter"|"triton"}`: resident memory of this process and of an embedded
    Triton (absent when Triton runs elsewhere)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mtphotos_memory_bytes", "resident memory of the adapter and of an embedded Triton", labels=["process"]
        )
        if (own := rss_bytes(os.getpid())) is not None:
            family.add_metric(["adapter"], own)
        if (server := triton_rss(os.getpid())) is not None:
            family.add_metric(["triton"], server)
        yield family


# --- state and lifespan -----------------------------------------------------------------------------------------


@dataclass
class ConsoleState:
    page: str
    describer: ModelDescriber
    started: float = field(default_factory=time.monotonic)
    rate: console_status.RateWindow = field(init=False)
    configs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # READY configs, by (name, state)

    def __post_init__(self) -> None:
        self.rate = console_status.RateWindow(self.started)


def make_lifespan(describer_factory: DescriberFactory | None = None) -> Callable[[Litestar], Any]:
    """The console's part of the app's lifespan: the page read once, the describer (the Triton one unless
    given) opened and closed, memory registered in the app's metrics registry."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        page = (resources.files("adapter") / PAGE_RESOURCE).read_text(encoding="utf-8")
        describer = (describer_factory or default_describer)(app.state.settings)
        app.state.console = ConsoleState(page, describer)
        collector = MemoryCollector()
        registry = app.state.metrics.registry
        registry.register(collector)
        try:
            yield
        finally:
            registry.unregister(collector)
            await app.state.console.describer.close()

    return lifespan


# --- routes -----------------------------------------------------------------------------------------------------


def page_language(accept_language: str) -> str:
    """'zh' when the browser prefers Chinese over English, else 'en' (the page can switch either way)."""
    ranked = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, q = item.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, position, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


@get("/", include_in_schema=False)
async def index(request: Request[Any, Any, Any], state: State) -> Response[str]:
    language = page_language(request.headers.get("accept-language", ""))
    tag = 'lang="zh-CN" data-lang="zh"' if language == "zh" else LANG_PLACEHOLDER
    page = state.console.page.replace(LANG_PLACEHOLDER, tag, 1)
    headers = {"cache-control": "no-cache", "vary": "accept-language"}
    return Response(page, media_type="text/html", headers=headers)


async def _models(
    console: ConsoleState, states: list[ModelState], exports: dict[str, dict[str, str]]
) -> list[dict[str, Any]]:
    async def config_of(state: ModelState) -> dict[str, Any] | None:
        if state.state != "READY":
            return None
        key = (state.name, state.state)
        if key not in console.configs:
            try:
                console.configs[key] = await console.describer.model_config(state.name)
            except BackendUnavailable:
                return None
        return console.configs[key]

    configs = await asyncio.gather(*(config_of(s) for s in states))
    try:
        stats = await console.describer.statistics()
    except BackendUnavailable:
        stats = {}
    rows = []
    for state, config in zip(states, configs):
        row = console_status.describe_model(state, config, stats.get(state.name), exports.get(state.name))
        if row["family"] is None and (family := family_of(state.name)) is not None:
            row["family"] = family.name
        rows.append(row)
    return sorted(rows, key=lambda r: (r["family"] or "~", r["name"]))


@get("/console/status", include_in_schema=False)
async def console_status_route(state: State) -> Response[bytes]:
    console: ConsoleState = state.console
    backend = state.backend
    ready = await backend.server_ready()
    states: list[ModelState] = []
    version = None
    if ready:
        try:
            states = await backend.models()
        except BackendUnavailable:
            ready = False
        try:
            version = (await console.describer.metadata()).get("version")
        except BackendUnavailable:
            version = None
    rows = await _models(console, states, state.exports) if ready else []
    now = time.monotonic()
    body = {
        "service": {"name": "mt-photos-triton", "version": __version__, "uptime_s": round(now - console.started)},
        "triton": {"ready": ready, "version": version if isinstance(version, str) else None},
        "families": console_status.families(rows, ready),
        "models": rows,
        # this request is in flight while it reads the registry: not counted
        "figures": console_status.figures(
            console_status.Samples.collect(state.metrics.registry), console.rate, now, in_flight_self=1
        ),
    }
    return json_response(body)


HANDLERS = [index, console_status_route]
