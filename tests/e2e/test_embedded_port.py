"""The embedded server is ready only when it is ours that answers: a port taken by another server fails the start."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from mt_photos_triton.runtime import embedded
from mt_photos_triton.runtime.embedded import EmbeddedTriton, EmbeddedTritonError

pytestmark = pytest.mark.e2e


class _AlwaysReady(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_port_taken_between_choice_and_bind_is_not_mistaken_for_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    squatter = http.server.ThreadingHTTPServer((embedded.LOOPBACK, 0), _AlwaysReady)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    port = squatter.server_address[1]
    # the port was free when chosen and is taken by the time tritonserver binds it (another process on the box)
    monkeypatch.setattr(embedded, "port_is_free", lambda *_args, **_kwargs: True)
    server = EmbeddedTriton(repository=tmp_path, models=[], ports={"http": port, "grpc": 0, "metrics": 0})
    try:
        with pytest.raises(EmbeddedTritonError, match="before it was ready"):
            server.start()
    finally:
        server.stop()
        squatter.shutdown()
