"""The pool of Triton servers: rotation, one retry elsewhere, re-admission, prompt failure, in-flight bound."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from adapter.backend import BackendUnavailable, InferenceFailed, Overloaded, PooledBackend, split_urls
from tests.unit.adapter.fakes import FakeBackend


@dataclass
class FakeServer(FakeBackend):
    url: str = "fake:8000"
    down: bool = False
    delay_s: float = 0.0

    async def infer(self, model, inputs, outputs):  # type: ignore[no-untyped-def]
        self.calls.append((model, dict(inputs)))
        await asyncio.sleep(self.delay_s)
        if self.down:
            raise BackendUnavailable(self.url)
        return {"served_by": np.array([self.url], dtype=object)}

    async def server_ready(self) -> bool:
        return not self.down


def _run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_requests_rotate_over_healthy_servers() -> None:
    servers = [FakeServer(url="a"), FakeServer(url="b")]
    pool = PooledBackend(servers, max_in_flight=8)

    async def calls() -> list[str]:
        return [(await pool.infer("m", {}, ["served_by"]))["served_by"][0] for _ in range(4)]

    assert sorted(_run(calls())) == ["a", "a", "b", "b"]


def test_a_failing_server_is_retried_elsewhere_and_taken_out() -> None:
    servers = [FakeServer(url="a", down=True), FakeServer(url="b")]
    pool = PooledBackend(servers, max_in_flight=8)

    async def calls() -> list[str]:
        return [(await pool.infer("m", {}, ["served_by"]))["served_by"][0] for _ in range(4)]

    assert _run(calls()) == ["b"] * 4
    assert pool.health() == {"a": False, "b": True}
    assert len(servers[0].calls) == 1, "an unhealthy server gets no more traffic"


def test_no_server_fails_at_once_and_recovery_readmits() -> None:
    servers = [FakeServer(url="a", down=True), FakeServer(url="b", down=True)]
    pool = PooledBackend(servers, max_in_flight=8)
    with pytest.raises(BackendUnavailable):
        _run(pool.infer("m", {}, ["served_by"]))
    with pytest.raises(BackendUnavailable):
        _run(pool.infer("m", {}, ["served_by"]))
    assert sum(len(s.calls) for s in servers) == 2, "the second call must not wait on dead servers"
    servers[1].down = False
    _run(pool.probe())
    assert pool.health() == {"a": False, "b": True}
    assert _run(pool.infer("m", {}, ["served_by"]))["served_by"][0] == "b"


def test_model_errors_are_not_failover_reasons() -> None:
    @dataclass
    class Refusing(FakeServer):
        async def infer(self, model, inputs, outputs):  # type: ignore[no-untyped-def]
            raise InferenceFailed(model, "invalid_image", "bad")

    pool = PooledBackend([Refusing(url="a"), FakeServer(url="b")], max_in_flight=8)

    async def calls() -> list[object]:
        return [await _outcome(pool) for _ in range(2)]

    results = _run(calls())
    assert sum(isinstance(r, InferenceFailed) for r in results) == 1, "no retry elsewhere for a model's answer"
    assert pool.health() == {"a": True, "b": True}


async def _outcome(pool: PooledBackend) -> object:
    try:
        return await pool.infer("m", {}, ["served_by"])
    except InferenceFailed as error:
        return error


def test_in_flight_requests_are_bounded() -> None:
    pool = PooledBackend([FakeServer(url="a", delay_s=0.05)], max_in_flight=2)

    async def burst() -> list[object]:
        return await asyncio.gather(*(pool.infer("m", {}, ["served_by"]) for _ in range(5)), return_exceptions=True)

    results = _run(burst())
    assert sum(isinstance(r, Overloaded) for r in results) == 3
    assert pool.in_flight == 0


def test_triton_url_lists() -> None:
    assert split_urls("t1:8000, t2:8000 t3:8000") == ["t1:8000", "t2:8000", "t3:8000"]
