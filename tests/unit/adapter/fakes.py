"""A readable stand-in for the inference backend (unit tests of the adapter's own logic only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from numpy.typing import NDArray

from adapter.backend import BackendError, ModelState, ModelUnavailable


@dataclass
class FakeBackend:
    ready: bool = True
    states: list[ModelState] = field(default_factory=list)
    answers: dict[str, dict[str, NDArray[Any]]] = field(default_factory=dict)
    # config parameters of the loaded models (a model not here is not loaded)
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)
    failure: BackendError | None = None
    calls: list[tuple[str, dict[str, NDArray[Any]]]] = field(default_factory=list)
    config_reads: list[str] = field(default_factory=list)
    started: bool = False
    closed: bool = False

    def start(self) -> None:
        self.started = True

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

    async def model_parameters(self, model: str) -> dict[str, str]:
        self.config_reads.append(model)
        if model not in self.parameters:
            raise ModelUnavailable(model)
        return dict(self.parameters[model])

    def health(self) -> dict[str, bool]:
        return {"fake:8000": self.ready}

    async def close(self) -> None:
        self.closed = True
