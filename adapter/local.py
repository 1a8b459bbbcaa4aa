"""The adapter served by uvicorn in a background thread on a free loopback port (tests and benches)."""

from __future__ import annotations

import contextlib
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

    from mt_photos_triton.embedded import free_port

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
