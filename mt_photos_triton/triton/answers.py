"""One answer per request of an execute, in order, each request failing on its own; the one error policy.

Triton hands a python model's `execute` every request the dynamic batcher grouped. Each gets its own response:
its outputs, or its own error, while the others of the batch are still served. The error a direct client reads:

- a `PipelineError` (a request the pipeline refuses) answers with the pipeline's own `<code>: <detail>`, which
  the adapter parses back with `errors.parse_code`;
- anything else is logged with its traceback and answered `<model>: internal error (<type>)`: no exception text
  reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from mt_photos_triton.errors import PipelineError

log = logging.getLogger("mt_photos_triton.triton")

Outputs = Mapping[str, NDArray[Any]]
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S", bound=Sequence[Any])


class Unanswered(RuntimeError):
    """The model left a request without outputs or error (a bug of the model, answered as internal)."""


def error_message(model: str, error: BaseException) -> str:
    """What a client of `model` reads for `error` (the one policy; the caller logs nothing itself)."""
    if isinstance(error, PipelineError):
        return str(error)
    log.error("%s: a request failed", model, exc_info=error)
    return f"{model}: internal error ({type(error).__name__})"


class Answers:
    """The answers to the requests of one execute: per request its outputs or its error; the first error wins."""

    def __init__(self, model: str, count: int) -> None:
        self.model = model
        self.count = count
        self._outputs: dict[int, Outputs] = {}
        self._errors: dict[int, BaseException] = {}

    def read(self, requests: Sequence[R], reader: Callable[[R], T]) -> dict[int, T]:
        """`reader(request)` for every request, by index; a request whose reader raises fails alone."""
        values: dict[int, T] = {}
        for index, request in enumerate(requests):
            with self.guard([index]):
                values[index] = reader(request)
        return values

    @contextmanager
    def guard(self, indices: Iterable[int]) -> Iterator[None]:
        """An exception raised inside fails exactly these requests; the execute goes on with the others."""
        indices = list(indices)
        try:
            yield
        except Exception as error:  # noqa: BLE001 - the error of these requests, answered by the policy
            if not indices:
                log.error("%s: a step for no request failed", self.model, exc_info=error)
            self.fail(indices, error)

    def fail(self, indices: int | Iterable[int], error: BaseException) -> None:
        for index in [indices] if isinstance(indices, int) else indices:
            self._errors.setdefault(index, error)

    def failed(self, index: int) -> bool:
        return index in self._errors

    def live(self, indices: Iterable[int]) -> list[int]:
        """Those of `indices` that have not failed."""
        return [index for index in indices if index not in self._errors]

    def give(self, index: int, outputs: Outputs) -> None:
        """The outputs of request `index`; a request that has failed stays failed."""
        self._outputs[index] = outputs

    def outcomes(self) -> list[Outputs | str]:
        """Per request, in order: its outputs, or its error message (each distinct error logged once)."""
        messages: dict[int, str] = {}  # by id() of the error: one exception may fail several requests
        results: list[Outputs | str] = []
        for index in range(self.count):
            error = self._errors.get(index)
            if error is None and index not in self._outputs:
                error = self._errors.setdefault(index, Unanswered(f"request {index} of {self.count}"))
            if error is None:
                results.append(self._outputs[index])
                continue
            if id(error) not in messages:
                messages[id(error)] = error_message(self.model, error)
            results.append(messages[id(error)])
        return results


def split(whole: S, sizes: Sequence[int]) -> list[S]:
    """`whole` (a list, or an array along its first axis) cut into consecutive pieces of `sizes`."""
    if sum(sizes) != len(whole):
        raise ValueError(f"pieces of {list(sizes)} do not make up {len(whole)} items")
    ends = np.cumsum(sizes, dtype=np.int64)
    return [whole[int(end) - size : int(end)] for size, end in zip(sizes, ends)]  # type: ignore[misc]


def split_outputs(outputs: Outputs, sizes: Sequence[int]) -> list[dict[str, NDArray[Any]]]:
    """Each output array cut along its batch axis into the pieces of `sizes`: one dict per piece."""
    pieces = {name: split(array, sizes) for name, array in outputs.items()}
    return [{name: pieces[name][index] for name in outputs} for index in range(len(sizes))]
