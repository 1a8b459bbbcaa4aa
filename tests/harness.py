"""Real parts for end-to-end tests: the embedded tritonserver and the adapter served over HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tritonclient.http as triton_http

from adapter import Settings, create_app
from mt_photos_triton.embedded import EmbeddedTriton, free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = ROOT / "model_repository"
START_TIMEOUT_S = 30.0


def fixtures_dir() -> Path:
    """`../shared/fixtures` beside the checkout, or MT_PHOTOS_FIXTURES."""
    return Path(os.environ.get("MT_PHOTOS_FIXTURES", ROOT.parent / "shared" / "fixtures"))


@dataclass
class TritonHarness:
    """One embedded server for the whole session in explicit model-control mode: each test module copies
    the model directories it needs into `repository` (or exports into it) and loads them by name."""

    server: EmbeddedTriton

    @property
    def repository(self) -> Path:
        return self.server.repository

    @property
    def url(self) -> str:
        return self.server.http_url

    def client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(self.url, network_timeout=300.0, connection_timeout=60.0)

    def install(self, model_dir: Path, name: str | None = None) -> Path:
        """Copy a model directory (config + version folder) into the served repository."""
        target = self.repository / (name or model_dir.name)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("__pycache__"))
        return target

    def install_committed(self, *names: str) -> None:
        """The committed model directories (python models, ensembles, configs) of this checkout."""
        for name in names:
            self.install(MODEL_REPOSITORY / name)

    def load(self, *names: str) -> None:
        client = self.client()
        try:
            for name in names:
                client.load_model(name)
                if not client.is_model_ready(name):
                    raise RuntimeError(f"{name} did not become ready; server log:\n{self.server.log_tail()}")
        except Exception as error:
            raise RuntimeError(f"loading {names} failed: {error}\nserver log:\n{self.server.log_tail()}") from error
        finally:
            client.close()

    def unload(self, *names: str) -> None:
        client = self.client()
        try:
            for name in names:
                client.unload_model(name)
        finally:
            client.close()


@contextlib.contextmanager
def live_adapter(settings: Settings) -> Iterator[str]:
    """The adapter served by uvicorn on a free loopback port in a background thread; yields its base URL."""
    import uvicorn

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
