"""Prometheus metrics of the adapter: requests and latency by route and outcome, in flight, rejections,
per-backend health, and the served tree's memory. One registry per app (no module-level state).

The middleware sees every HTTP request (404s and 413s included) and its status; what an inference route
answered inside a 200 is told to it by the inference path (`record_outcome`), not read back from the body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mt_photos_triton.procfs import tree_memory

ROUTES = frozenset(
    {"/", "/check", "/ping", "/restart", "/restart_v2", "/clip/img", "/clip/txt", "/ocr", "/represent",
     "/health/live", "/health/ready", "/metrics", "/predict"}
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REJECTIONS = {401: "unauthorized", 413: "too_large"}
# where the inference path leaves the request's outcome: a key of the ASGI scope, which the handler's request
# and this middleware share
OUTCOME_KEY = "mtphotos.outcome"
OK = "ok"
BUSY = "busy"


def record_outcome(scope: MutableMapping[str, Any], reason: str) -> None:
    """What the request came to: OK, or the reason of its `msg` body (invalid_image, busy, ...)."""
    scope[OUTCOME_KEY] = reason


class ServedTreeMemory:
    """`mtphotos_served_tree_memory_bytes{measure="pss"|"rss"}`: the memory of this process and every process
    below it, read at each scrape. Under `serve` with the embedded server that is the whole served tree (adapter,
    tritonserver, one stub per python model instance): PSS counts the pages they share once (what the tree costs
    the machine); RSS counts them once per process. With Triton elsewhere it is the adapter alone."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        memory = tree_memory(os.getpid())
        family = GaugeMetricFamily(
            "mtphotos_served_tree_memory_bytes",
            "memory of the adapter and the processes below it (embedded Triton and its stubs), pss or rss",
            labels=["measure"],
        )
        family.add_metric(["pss"], memory.pss)
        family.add_metric(["rss"], memory.rss)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ServedTreeMemory())
        self.requests = Counter(
            "mtphotos_requests", "HTTP requests by route and outcome (ok, error = the spec's msg body, http_NNN)",
            ["route", "outcome"], registry=self.registry,
        )
        self.errors = Counter(
            "mtphotos_errors", "msg bodies by route and reason (invalid_image, too_large, busy, ...)",
            ["route", "reason"], registry=self.registry,
        )
        self.latency = Histogram(
            "mtphotos_request_seconds", "HTTP request latency by route", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge("mtphotos_in_flight_requests", "HTTP requests being handled", registry=self.registry)
        self.rejected = Counter(
            "mtphotos_rejected", "requests refused before inference (busy, too_large, unauthorized)", ["reason"],
            registry=self.registry,
        )
        self.backend_up = Gauge(
            "mtphotos_backend_up", "1 when the Triton server is in rotation", ["url"], registry=self.registry
        )

    def render(self, backend_health: dict[str, bool]) -> tuple[bytes, str]:
        for url, healthy in backend_health.items():
            self.backend_up.labels(url=url).set(1 if healthy else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def record(self, path: str, status: int, reason: str | None, seconds: float) -> None:
        route = path if path in ROUTES else "other"
        if not 200 <= status < 300:
            outcome = f"http_{status}"
            if status in REJECTIONS:
                self.rejected.labels(reason=REJECTIONS[status]).inc()
        elif reason is None or reason == OK:
            outcome = OK
        else:
            outcome = "error"
            self.errors.labels(route=route, reason=reason).inc()
            if reason == BUSY:
                self.rejected.labels(reason=BUSY).inc()
        self.requests.labels(route=route, outcome=outcome).inc()
        self.latency.labels(route=route).observe(seconds)


def metrics_middleware(metrics: Metrics) -> Callable[[Any], Any]:
    """An ASGI middleware factory recording every HTTP request in `metrics`."""

    def wrap(app: Any) -> Any:
        async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            seen = {"status": 500}

            async def capture(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    seen["status"] = message["status"]
                await send(message)

            metrics.in_flight.inc()
            try:
                await app(scope, receive, capture)
            finally:
                metrics.in_flight.dec()
                metrics.record(scope["path"], seen["status"], scope.get(OUTCOME_KEY), time.perf_counter() - start)

        return middleware

    return wrap
