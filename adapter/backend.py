"""The inference backend the routes call: a Protocol, and its Triton implementation over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from mt_photos_triton.errors import parse_code

log = logging.getLogger(__name__)

READY = "READY"
T = TypeVar("T")


class BackendError(Exception):
    """Base of what an inference call can fail with; routes map each kind to a fixed message."""


class BackendUnavailable(BackendError):
    """The inference server cannot be reached or did not answer in time."""


class ModelUnavailable(BackendError):
    """The model is not loaded (never exported, or it failed to load)."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


class Overloaded(BackendError):
    """Too many requests are in flight; the caller should retry later."""


class InferenceFailed(BackendError):
    """The model answered this request with an error; `code` is one of mt_photos_triton.errors.CODES."""

    def __init__(self, model: str, code: str | None, message: str) -> None:
        super().__init__(message)
        self.model = model
        self.code = code


@dataclass(frozen=True)
class ModelState:
    name: str
    state: str  # READY, UNAVAILABLE, LOADING, ... or "" when the server knows it but never loaded it
    reason: str = ""


@runtime_checkable
class InferenceBackend(Protocol):
    """What the app needs of the inference server(s): opened in the lifespan, called by the one inference path
    and the health routes, closed at shutdown."""

    def start(self) -> None:
        """Begin any background work (called once, inside the running event loop)."""

    async def infer(
        self, model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, NDArray[Any]]: ...

    async def server_ready(self) -> bool: ...

    async def models(self) -> list[ModelState]: ...

    async def model_parameters(self, model: str) -> dict[str, str]:
        """The `parameters` of a loaded model's config (ModelUnavailable when it is not loaded)."""

    def health(self) -> dict[str, bool]:
        """Each server's URL and whether it is in rotation."""

    async def close(self) -> None: ...


def _triton_dtype(array: NDArray[Any]) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return "BYTES" if array.dtype == np.object_ or array.dtype.kind in "SU" else np_to_triton_dtype(array.dtype)


_NOT_LOADED = ("unknown model", "is not found", "is not ready", "no available versions", "not loaded")


class TritonBackend:
    """tritonclient's asyncio HTTP client, with its failures sorted into BackendError kinds."""

    def __init__(self, url: str, timeout_s: float) -> None:
        import tritonclient.http.aio as triton_http

        self._http = triton_http
        self.url = url
        self.timeout_s = timeout_s
        self._client = triton_http.InferenceServerClient(url, conn_timeout=timeout_s)

    async def infer(
        self, model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, NDArray[Any]]:
        request_inputs = []
        for name, array in inputs.items():
            item = self._http.InferInput(name, list(array.shape), _triton_dtype(array))
            item.set_data_from_numpy(array, binary_data=True)
            request_inputs.append(item)
        requested = [self._http.InferRequestedOutput(name, binary_data=True) for name in outputs]
        result = await self._call(model, self._client.infer(model, request_inputs, outputs=requested))
        return {name: result.as_numpy(name) for name in outputs}

    async def _call(self, model: str, call: Awaitable[T]) -> T:
        """`call` within the timeout, its failures sorted into the BackendError kinds."""
        from tritonclient.utils import InferenceServerException

        try:
            return await asyncio.wait_for(call, timeout=self.timeout_s)
        except InferenceServerException as error:
            message = str(error.message() or error)
            if any(marker in message for marker in _NOT_LOADED):
                raise ModelUnavailable(model) from error
            raise InferenceFailed(model, parse_code(message), message) from error
        except (OSError, asyncio.TimeoutError) as error:
            raise BackendUnavailable(f"{self.url}: {type(error).__name__}") from error
        except Exception as error:  # aiohttp's client errors are not OSErrors
            if type(error).__module__.startswith("aiohttp"):
                raise BackendUnavailable(f"{self.url}: {type(error).__name__}") from error
            raise

    async def model_parameters(self, model: str) -> dict[str, str]:
        config = await self._call(model, self._client.get_model_config(model))
        parameters = config.get("parameters") or {}
        return {key: str(value.get("string_value", "")) for key, value in parameters.items()}

    def start(self) -> None:
        """Nothing runs in the background of one server (the pool probes its members)."""

    def health(self) -> dict[str, bool]:
        return {self.url: True}

    async def server_ready(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.is_server_ready(), timeout=self.timeout_s))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    async def models(self) -> list[ModelState]:
        try:
            index = await asyncio.wait_for(self._client.get_model_repository_index(), timeout=self.timeout_s)
        except Exception as error:
            raise BackendUnavailable(f"{self.url}: {type(error).__name__}") from error
        return [ModelState(m["name"], m.get("state", ""), m.get("reason", "")) for m in index]

    async def close(self) -> None:
        await self._client.close()


@dataclass
class Member:
    """One server of the pool and what we last learnt of its health."""

    backend: Any  # an InferenceBackend with a `url` (TritonBackend)
    healthy: bool = True
    failures: int = 0


class PooledBackend:
    """Several Triton servers behind one InferenceBackend.

    Requests go round-robin to the healthy servers. A server that cannot be reached is marked unhealthy and the
    request is retried once on another (inference is idempotent); a background probe re-admits it when its
    readiness returns. With no healthy server the call fails at once instead of waiting. At most
    `max_in_flight` inferences run at a time; beyond that the call fails with Overloaded.
    """

    def __init__(self, backends: Sequence[Any], max_in_flight: int, probe_interval_s: float = 2.0) -> None:
        if not backends:
            raise ValueError("at least one Triton server is needed")
        self.members = [Member(backend) for backend in backends]
        self.max_in_flight = max_in_flight
        self.probe_interval_s = probe_interval_s
        self.in_flight = 0
        self._next = 0
        self._probe_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin probing unhealthy servers (needs a running event loop)."""
        if self._probe_task is None:
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_forever())

    def _healthy(self) -> list[Member]:
        return [m for m in self.members if m.healthy]

    def _pick(self, exclude: Member | None = None) -> Member | None:
        candidates = [m for m in self._healthy() if m is not exclude]
        if not candidates:
            return None
        self._next = (self._next + 1) % len(candidates)
        return candidates[self._next]

    def _mark_down(self, member: Member, error: BackendError) -> None:
        if member.healthy:
            log.warning("Triton at %s is unavailable (%s): taken out of rotation", member.backend.url, error)
        member.healthy = False
        member.failures += 1

    async def infer(
        self, model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, NDArray[Any]]:
        if self.in_flight >= self.max_in_flight:
            raise Overloaded(f"{self.in_flight} requests in flight")
        self.in_flight += 1
        try:
            tried: Member | None = None
            for _ in range(2):  # the first healthy server, then one retry on another
                member = self._pick(exclude=tried)
                if member is None:
                    break
                try:
                    return await member.backend.infer(model, inputs, outputs)
                except BackendUnavailable as error:
                    self._mark_down(member, error)
                    tried = member
            raise BackendUnavailable("no Triton server is available")
        finally:
            self.in_flight -= 1

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            await self.probe()

    async def _refresh(self, member: Member) -> bool:
        if await member.backend.server_ready():
            if not member.healthy:
                log.info("Triton at %s is ready again: back in rotation", member.backend.url)
            member.healthy = True
        else:
            self._mark_down(member, BackendUnavailable("not ready"))
        return member.healthy

    async def probe(self) -> None:
        """Re-admit unhealthy servers whose readiness returned."""
        for member in self.members:
            if not member.healthy:
                await self._refresh(member)

    async def server_ready(self) -> bool:
        """Whether any server is ready, refreshing every server's health on the way."""
        states = [await self._refresh(member) for member in self.members]
        return any(states)

    async def models(self) -> list[ModelState]:
        """The model states of the first healthy server (all servers serve the same repository)."""
        return await self._first_healthy(lambda backend: backend.models())  # type: ignore[no-any-return]

    async def model_parameters(self, model: str) -> dict[str, str]:
        return await self._first_healthy(lambda backend: backend.model_parameters(model))  # type: ignore[no-any-return]

    async def _first_healthy(self, call: Any) -> Any:
        for member in self._healthy() or self.members:
            try:
                return await call(member.backend)
            except BackendUnavailable as error:
                self._mark_down(member, error)
        raise BackendUnavailable("no Triton server is available")

    def health(self) -> dict[str, bool]:
        return {m.backend.url: m.healthy for m in self.members}

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        for member in self.members:
            await member.backend.close()


def split_urls(value: str) -> list[str]:
    """TRITON_URL may list several servers, separated by commas or spaces."""
    return [url for url in value.replace(",", " ").split() if url]
