"""Shared fixtures: the fixture folder, one real tritonserver for the session, live adapters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from adapter import Settings
from mt_photos_triton.runtime.embedded import EmbeddedTriton
from tests.harness import TritonHarness, fixtures_dir, live_adapter


@pytest.fixture(scope="session")
def fixtures() -> Path:
    path = fixtures_dir()
    if not path.is_dir():
        pytest.skip(f"test fixtures not found at {path} (set MT_PHOTOS_FIXTURES)")
    return path


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonHarness]:
    """The real embedded tritonserver, started once with an empty repository (models are loaded by tests)."""
    # ports 0: kernel-chosen, so parallel test sessions never collide
    ports = {"http": 0, "grpc": 0, "metrics": 0}
    server = EmbeddedTriton(repository=tmp_path_factory.mktemp("model_repository"), models=[], ports=ports)
    with server:
        yield TritonHarness(server)


@pytest.fixture(scope="session")
def adapter_factory(triton: TritonHarness) -> Callable[..., AbstractContextManager[str]]:
    """`with adapter_factory(FACE_MIN_SCORE=0.5) as url:` - the adapter on a free port, talking to `triton`."""

    def make(**env: str) -> AbstractContextManager[str]:
        settings = Settings.from_env({k.upper(): str(v) for k, v in env.items()}, triton_url=triton.url)
        return live_adapter(settings)

    return make


@pytest.fixture(scope="session")
def adapter_url(adapter_factory: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    """One adapter with default settings for the session."""
    with adapter_factory() as url:
        yield url
