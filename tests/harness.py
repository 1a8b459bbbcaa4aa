"""Real parts for end-to-end tests: the embedded tritonserver and the adapter served over HTTP."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import tritonclient.http as triton_http

from mt_photos_triton.bench.servers import live_adapter  # noqa: F401 - re-exported for the tests
from mt_photos_triton.runtime.embedded import EmbeddedTriton

ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = ROOT / "model_repository"


def fixtures_dir() -> Path:
    """`../shared/fixtures` beside the checkout, or MT_PHOTOS_FIXTURES."""
    return Path(os.environ.get("MT_PHOTOS_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def absent_fixture_file(error: BaseException | None) -> Path | None:
    """The fixture file whose absence raised `error` (or an error it was raised from), else None."""
    folder = fixtures_dir().resolve()
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, FileNotFoundError) and error.filename:
            path = Path(os.fsdecode(error.filename)).resolve()
            if path.is_relative_to(folder) and not path.exists():
                return path
        error = error.__cause__ or error.__context__
    return None


def skip_reason(report: object) -> str:
    """The reason of a skipped test report, without pytest's location prefix."""
    longrepr = getattr(report, "longrepr", None)
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


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


SETTLE_S, SETTLE_POLL_S = 5.0, 0.05  # how long, and how often, inference statistics are read until they settle


async def settled_statistics(client: object, model: str, before: dict, expected: int) -> dict:
    """`model`'s statistics once they stop moving. Triton may count a run a moment after its response went out
    (seen: 5 images in 5 runs instead of 7, 8 requests instead of 16), so right after the last response they can
    lag: read until `expected` more inferences than `before` are counted and two reads agree, SETTLE_S at most."""
    async def read() -> dict:
        return (await client.get_inference_statistics(model))["model_stats"][0]  # type: ignore[attr-defined]

    deadline = asyncio.get_running_loop().time() + SETTLE_S
    latest = await read()
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)
        again = await read()
        counted = int(again["inference_count"]) - int(before["inference_count"])
        same = all(again[k] == latest[k] for k in ("inference_count", "execution_count"))
        if same and counted >= expected:
            return again
        latest = again
    return latest
