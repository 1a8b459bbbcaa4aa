"""The adapter on a free loopback port, for tests and benches: served by uvicorn in a background thread
(`live_adapter`), or as production runs it, a process of its own (`adapter_process`: benches, so that the
adapter's work does not share the measuring client's interpreter)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from adapter.app import create_app
from adapter.settings import Settings

START_TIMEOUT_S = 30.0


@contextlib.contextmanager
def live_adapter(settings: Settings) -> Iterator[str]:
    """Yields the base URL of the running adapter; stops it on exit."""
    import uvicorn

    from mt_photos_triton.runtime.ports import free_port

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"adapter-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the adapter did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)


@contextlib.contextmanager
def adapter_process(
    triton_url: str, api_key: str, timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`mt-photos-triton serve --triton-url ...` in a child process (`env` added to its environment, e.g.
    IMMICH_ML=true); yields its base URL once /health/ready answers 200 (every model of the server loaded);
    terminates it on exit."""
    import httpx

    from mt_photos_triton.runtime.ports import free_port

    port = free_port()
    env = {**os.environ, "API_AUTH_KEY": api_key, "LOG_LEVEL": "WARNING", **(env or {})}
    command = [sys.executable, "-m", "mt_photos_triton.cli", "serve", "--triton-url", triton_url,
               "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the adapter exited with code {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the adapter was not ready after {timeout_s:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
