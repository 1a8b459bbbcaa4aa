"""The README's first command, as a user runs it: `make serve`, then Ctrl-C.

Starts `make serve` in its own process group, waits for the adapter, checks `/check` byte for byte, the 401s
and readiness, then sends SIGINT to the whole group (what a terminal's Ctrl-C does) and checks that no
tritonserver, no python-backend stub and no shared-memory region of it is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mt_photos_triton.procfs import mapped_files
from mt_photos_triton.runtime.embedded import SHM_DIR, shm_regions
from mt_photos_triton.runtime.ports import free_port
from mt_photos_triton.procfs import processes
from tests.harness import ROOT
from tests.unit.adapter.test_core_routes import CHECK_BODY, KEY

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 600.0  # a first `make serve` may still export the models it can obtain
STOP_TIMEOUT_S = 60.0


def _processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (the server and its stubs name the repository)."""
    return [
        " ".join(p.argv)[:200]
        for p in processes()
        if not p.zombie and p.argv and p.argv[0].endswith(("tritonserver", "triton_python_backend_stub"))
        and any(str(path) in arg for arg in p.argv)
    ]


@pytest.fixture
def make_serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    log_path = tmp_path / "make-serve.log"
    env = {**os.environ, "HTTP_PORT": str(port), "HTTP_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    env.pop("MODEL_REPOSITORY", None)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            ["make", "serve"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_check(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.post(f"{url}/check", headers={"api-key": KEY}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"make serve did not answer within {START_TIMEOUT_S:.0f} s:\n{log_path.read_text()[-3000:]}")


def test_make_serve_answers_then_stops_cleanly_on_ctrl_c(make_serve: tuple) -> None:
    process, url, log_path = make_serve
    shm_before = shm_regions()
    _wait_for_check(process, url, log_path)
    repository = ROOT / "model_repository"
    assert _processes_using(repository), "make serve must run the embedded tritonserver"

    check = httpx.post(f"{url}/check?t=1", headers={"api-key": KEY})
    assert check.content == CHECK_BODY
    assert httpx.post(f"{url}/check", headers={"api-key": "wrong"}).status_code == 401
    missing = httpx.post(f"{url}/check")
    assert (missing.status_code, missing.content) == (401, b'{"detail":"Invalid API key"}')

    ready = httpx.get(f"{url}/health/ready")
    body = ready.json()
    # truthful: ready exactly when the server is up and nothing it loaded failed
    assert body["server"] == "ready"
    assert ready.status_code == (200 if "failed" not in body else 503), body
    print(f"\nmake serve: /health/ready {ready.status_code} families={body['families']}")

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends to the foreground group
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make serve did not stop on SIGINT:\n{log_path.read_text()[-3000:]}")
    deadline = time.monotonic() + 10
    while _processes_using(repository) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_using(repository) == []
    leftovers = (shm_regions() - shm_before) - mapped_files(SHM_DIR)
    assert leftovers == set(), f"shared-memory regions left behind: {leftovers}"
    assert "stopping the embedded Triton server" in log_path.read_text()
