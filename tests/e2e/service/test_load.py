"""Load: 8 clients for LOAD_SECONDS (60 by default) over the mixed routes, real models where the fixtures have
them; every answer must be well formed. Then /metrics must count what was sent, and schemathesis must pass."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.e2e.service.support import KEY, Call, Service, drive, percentile

pytestmark = pytest.mark.e2e

CONCURRENCY = 8
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))


def _sample_peak(service: Service, stop: threading.Event, peak: dict[str, int]) -> None:
    while not stop.wait(0.5):
        peak["pss"] = max(peak["pss"], service.total_pss())
        peak["rss"] = max(peak["rss"], service.total_rss())


def _metric(text: str, route: str, outcome: str) -> float:
    pattern = rf'^mtphotos_requests_total\{{outcome="{outcome}",route="{re.escape(route)}"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def test_load_mixed_routes(service: Service, mix: list[Call]) -> None:
    start = {"pss": service.total_pss(), "rss": service.total_rss()}
    peak = dict(start)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_peak, args=(service, stop, peak), daemon=True)
    sampler.start()
    started = time.monotonic()
    outcomes = asyncio.run(drive(service.url, mix, CONCURRENCY, LOAD_SECONDS, timeout=60))
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()

    bad = [o for o in outcomes if not o.ok]
    latencies = [o.seconds for o in outcomes]
    print(f"\nload: {len(outcomes)} requests in {elapsed:.1f} s at concurrency {CONCURRENCY}: "
          f"{len(outcomes) / elapsed:.1f} req/s, p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, malformed or missing {len(bad)}")
    # the served tree (adapter, tritonserver, every stub): PSS counts shared pages once, RSS once per process
    print(f"  memory of the served tree: after start {start['pss'] / 2**20:.0f} MiB PSS "
          f"({start['rss'] / 2**20:.0f} MiB RSS), peak under load {peak['pss'] / 2**20:.0f} MiB PSS "
          f"({peak['rss'] / 2**20:.0f} MiB RSS)")
    for route in sorted({o.route for o in outcomes}):
        mine = [o.seconds for o in outcomes if o.route == route]
        print(f"  {route:<11} {len(mine):>5} requests, p50 {percentile(mine, 0.5) * 1000:6.0f} ms, "
              f"p99 {percentile(mine, 0.99) * 1000:6.0f} ms")
    assert outcomes and not bad, f"{len(bad)} malformed answers, first: {bad[:3]}"

    # what /metrics counted equals what we sent
    text = httpx.get(f"{service.url}/metrics").text
    sent = Counter(o.route for o in outcomes)
    counted = {route: _metric(text, route, "ok") for route in sent}
    print(f"  /metrics ok counts {counted}")
    assert counted == {route: float(n) for route, n in sent.items()}


def test_schemathesis_against_the_openapi_schema(service: Service) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{service.url}/schema/openapi.json",
         "-H", f"api-key: {KEY}", "--max-examples", "30", "--seed", "1", "--request-timeout", "60"],
        capture_output=True, text=True, timeout=600,
    )
    summary = "\n".join(result.stdout.strip().splitlines()[-14:])
    print(f"\nschemathesis:\n{summary}")
    assert result.returncode == 0, result.stdout[-6000:]
