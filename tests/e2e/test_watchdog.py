"""`serve` restarts an embedded server that died, on the same port, and says so."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from mt_photos_triton.runtime.embedded import EmbeddedTriton
from mt_photos_triton.runtime.watchdog import Watchdog

pytestmark = pytest.mark.e2e


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_a_killed_server_is_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = EmbeddedTriton(repository=tmp_path, models=[], ports={"http": 0, "grpc": 0, "metrics": 0})
    server.start()
    watchdog = Watchdog(server, first_delay_s=0.2)
    watchdog.start()
    try:
        url = server.http_url
        assert server.pid is not None
        with caplog.at_level("WARNING"):
            os.kill(server.pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while watchdog.restarts == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert watchdog.restarts == 1
        assert server.http_url == url and _ready(url)
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "died" in messages and "is back" in messages
    finally:
        watchdog.stop()
        server.stop()
