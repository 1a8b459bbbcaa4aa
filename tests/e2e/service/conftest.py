"""One repository with every family exported, shared by the service tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service.support import Call, Service, build_repository, request_mix


@pytest.fixture(scope="session")
def service_repository(tmp_path_factory: pytest.TempPathFactory, fixtures: Path) -> Path:
    work = tmp_path_factory.mktemp("service-sources")
    return build_repository(tmp_path_factory.mktemp("service") / "model_repository", fixtures, work)


@pytest.fixture(scope="session")
def mix(fixtures: Path) -> list[Call]:
    return request_mix(fixtures)


@pytest.fixture
def service(service_repository: Path, tmp_path: Path) -> Iterator[Service]:
    running = Service(service_repository, tmp_path / "serve.log", env={"INFERENCE_TIMEOUT_S": "20"}).start()
    try:
        yield running
    finally:
        running.stop()
