"""Faults under load: the Triton server dies and comes back; with two servers, one dies and nobody notices."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from adapter import Settings
from mt_photos_triton.runtime.embedded import EmbeddedTriton
from mt_photos_triton.repository import loadable_models
from tests.e2e.service.support import KEY, Call, Service, drive
from tests.harness import live_adapter

pytestmark = pytest.mark.e2e

CONCURRENCY = 4
KILL_AT_S = 6.0
OUTAGE_RUN_S = 45.0
DEADLINE_S = 20.0  # INFERENCE_TIMEOUT_S of the service fixture
PAIR_RUN_S = 16.0


def test_triton_killed_and_restarted_during_load(service: Service, mix: list[Call]) -> None:
    readiness: list[tuple[float, int]] = []
    killed: list[float] = []

    def on_tick(elapsed: float) -> None:
        try:
            readiness.append((elapsed, httpx.get(f"{service.url}/health/ready", timeout=2).status_code))
        except httpx.HTTPError:
            readiness.append((elapsed, 0))
        if not killed and elapsed >= KILL_AT_S:
            pid = service.triton_pid()
            assert pid is not None, "no tritonserver under serve"
            os.kill(pid, signal.SIGKILL)
            killed.append(elapsed)

    outcomes = asyncio.run(drive(service.url, mix, CONCURRENCY, OUTAGE_RUN_S, timeout=DEADLINE_S + 10, on_tick=on_tick))
    assert killed, "the server was never killed"
    failed = [o for o in outcomes if not o.ok]
    hung = [o for o in outcomes if o.seconds > DEADLINE_S + 2]
    not_spec = [o for o in failed if not (o.status == 200 and o.error_body)]
    statuses = [status for _, status in readiness]
    first_503 = next((t for t, s in readiness if s == 503), None)
    back = next((t for t, s in readiness if s == 200 and first_503 is not None and t > first_503), None)
    before = [o for o in outcomes if o.started < killed[0]]
    after = [o for o in outcomes if back is not None and o.started > back + 1]
    rate_before = sum(o.ok for o in before) / killed[0]
    rate_after = sum(o.ok for o in after) / max(OUTAGE_RUN_S - (back or OUTAGE_RUN_S) - 1, 1e-9)
    print(
        f"\nfault (Triton SIGKILL at {killed[0]:.1f} s): {len(outcomes)} requests, {len(failed)} answered with the "
        f"spec's error body during the outage, {len(not_spec)} other failures, {len(hung)} over the deadline; "
        f"readiness 503 at {first_503} s, 200 again at {back} s; throughput {rate_before:.1f} req/s before, "
        f"{rate_after:.1f} req/s after recovery"
    )
    assert not hung and not not_spec
    assert 503 in statuses and back is not None, f"readiness never went 503 then 200: {readiness}"
    assert rate_after > 0.3 * rate_before, "throughput did not recover"
    log = service.log_path.read_text(errors="replace")
    assert "the embedded Triton server died" in log and "is back" in log


def test_two_servers_one_killed_no_request_fails(service_repository: Path, mix: list[Call]) -> None:
    models = loadable_models(service_repository)
    servers = [
        EmbeddedTriton(repository=service_repository, models=models, ports={"http": 0, "grpc": 0, "metrics": 0})
        for _ in range(2)
    ]
    for server in servers:
        server.start()
    try:
        settings = Settings.from_env({"API_AUTH_KEY": KEY}, triton_url=",".join(s.http_url for s in servers))
        killed: list[float] = []

        def on_tick(elapsed: float) -> None:
            if not killed and elapsed >= PAIR_RUN_S / 3:
                assert servers[0].pid is not None
                os.kill(servers[0].pid, signal.SIGKILL)
                killed.append(elapsed)

        with live_adapter(settings) as url:
            outcomes = asyncio.run(drive(url, mix, CONCURRENCY, PAIR_RUN_S, timeout=60, on_tick=on_tick))
            health = httpx.get(f"{url}/metrics").text
        failed = [o for o in outcomes if not o.ok]
        after_kill = [o for o in outcomes if killed and o.started > killed[0]]
        print(f"\nfailover (2 servers, one SIGKILLed at {killed[0]:.1f} s): {len(outcomes)} requests, "
              f"{len(after_kill)} after the kill, {len(failed)} failed")
        assert killed and after_kill and not failed, failed[:5]
        assert f'mtphotos_backend_up{{url="{servers[0].http_url}"}} 0.0' in health
    finally:
        for server in servers:
            server.stop()
        time.sleep(0.1)
