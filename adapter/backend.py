"""The inference backend the routes call: a Protocol, and its Triton implementation over HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from mt_photos_triton.errors import parse_code

log = logging.getLogger(__name__)

READY = "READY"


class BackendError(Exception):
    """Base of what an inference call can fail with; routes map each kind to a fixed message."""


class BackendUnavailable(BackendError):
    """The inference server cannot be reached or did not answer in time."""


class ModelUnavailable(BackendError):
    """The model is not loaded (never exported, or it failed to load)."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


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
    async def infer(
        self, model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, NDArray[Any]]: ...

    async def server_ready(self) -> bool: ...

    async def models(self) -> list[ModelState]: ...

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
        from tritonclient.utils import InferenceServerException

        request_inputs = []
        for name, array in inputs.items():
            item = self._http.InferInput(name, list(array.shape), _triton_dtype(array))
            item.set_data_from_numpy(array, binary_data=True)
            request_inputs.append(item)
        requested = [self._http.InferRequestedOutput(name, binary_data=True) for name in outputs]
        try:
            result = await asyncio.wait_for(
                self._client.infer(model, request_inputs, outputs=requested), timeout=self.timeout_s
            )
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
        return {name: result.as_numpy(name) for name in outputs}

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
