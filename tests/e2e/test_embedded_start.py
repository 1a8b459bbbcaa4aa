"""Starting the embedded server: ready only when it is ours that answers (a port taken by another server fails
the start), and a repository whose path holds a space is served (the python stub cannot start under one)."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from pathlib import Path

import pytest

from mt_photos_triton.runtime import ports
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
    squatter = http.server.ThreadingHTTPServer((ports.LOOPBACK, 0), _AlwaysReady)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    port = squatter.server_address[1]
    # the port was free when chosen and is taken by the time tritonserver binds it (another process on the box)
    monkeypatch.setattr(ports, "port_is_free", lambda *_args, **_kwargs: True)
    server = EmbeddedTriton(repository=tmp_path, models=[], ports={"http": port, "grpc": 0, "metrics": 0})
    try:
        with pytest.raises(EmbeddedTritonError, match="before it was ready"):
            server.start()
    finally:
        server.stop()
        squatter.shutdown()


IDENTITY_CONFIG = """name: "identity"
backend: "python"
max_batch_size: 4
input { name: "x" data_type: TYPE_FP32 dims: 1 }
output { name: "y" data_type: TYPE_FP32 dims: 1 }
"""
IDENTITY_MODEL = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())])
            for r in requests
        ]
"""


def test_a_repository_path_with_a_space_is_served(tmp_path: Path) -> None:
    repository = tmp_path / "my photos models"
    (repository / "identity" / "1").mkdir(parents=True)
    (repository / "identity" / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (repository / "identity" / "1" / "model.py").write_text(IDENTITY_MODEL)
    server = EmbeddedTriton(repository=repository, models=["identity"], ports={"http": 0, "grpc": 0, "metrics": 0})
    server.ready_timeout_s = 60
    try:
        server.start()
        url = f"http://{server.http_url}/v2/models/identity/ready"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
    finally:
        server.stop()
