"""A readable stand-in for the inference backend (unit tests of the adapter's own logic only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from numpy.typing import NDArray

from adapter.backend import BackendError, ModelState


@dataclass
class FakeBackend:
    ready: bool = True
    states: list[ModelState] = field(default_factory=list)
    answers: dict[str, dict[str, NDArray[Any]]] = field(default_factory=dict)
    failure: BackendError | None = None
    calls: list[tuple[str, dict[str, NDArray[Any]]]] = field(default_factory=list)
    closed: bool = False

    async def infer(
        self, model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, NDArray[Any]]:
        self.calls.append((model, dict(inputs)))
        if self.failure is not None:
            raise self.failure
        return {name: self.answers[model][name] for name in outputs}

    async def server_ready(self) -> bool:
        return self.ready

    async def models(self) -> list[ModelState]:
        return list(self.states)

    async def close(self) -> None:
        self.closed = True
