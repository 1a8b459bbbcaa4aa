"""Row packing: the rows of many inputs sent to one model in as few calls as their shapes and a limit allow.

Each input is an array whose first axis is rows (one image's detector input, one image's recognition batch).
Inputs whose other dimensions agree share calls, cut into calls of at most `limit` rows; each call's outputs
are cut back so that every input gets its own rows of each output, or the exception of a call it was in (and
only the inputs of a failed call get it). Pure: the call itself is passed in (a BLS call in the models).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Outputs = dict[str, NDArray[Any]]
RowResult = Outputs | BaseException  # one input's rows of every output, or the error of a call it was in


@dataclass(frozen=True)
class Span:
    """Rows `start:end` of a call are the next rows of input `item` (its spans, in call order, are its rows)."""

    item: int
    start: int
    end: int


@dataclass(frozen=True)
class RowCall:
    rows: NDArray[Any]
    spans: tuple[Span, ...]


def pack_rows(items: Sequence[NDArray[Any]], limit: int) -> list[RowCall]:
    """The calls that carry every row of `items`: rows of equal trailing shape together, at most `limit` a call,
    each input's rows in order (an input spans consecutive calls when its group has more than `limit` rows)."""
    if limit < 1:
        raise ValueError(f"rows per call must be at least 1, not {limit}")
    calls: list[RowCall] = []
    by_shape = sorted(range(len(items)), key=lambda i: items[i].shape[1:])
    for _, group in itertools.groupby(by_shape, key=lambda i: items[i].shape[1:]):
        members = [i for i in group if len(items[i])]
        if not members:
            continue
        ends = np.cumsum([len(items[i]) for i in members])
        spans = [(i, int(end) - len(items[i]), int(end)) for i, end in zip(members, ends)]
        rows = np.concatenate([items[i] for i in members])
        for first in range(0, len(rows), limit):
            last = first + limit
            inside = tuple(
                Span(i, max(a, first) - first, min(b, last) - first) for i, a, b in spans if a < last and b > first
            )
            calls.append(RowCall(rows[first:last], inside))
    return calls


def unpack_rows(calls: Sequence[RowCall], answers: Sequence[Outputs | BaseException], count: int) -> list[RowResult]:
    """Per input (of `count`): its rows of each output of the calls it was in, or the first failed call's error.
    An input of no rows was in no call: it gets no outputs ({})."""
    pieces: list[list[Outputs | BaseException]] = [[] for _ in range(count)]
    for call, answer in zip(calls, answers, strict=True):
        for span in call.spans:
            failed = isinstance(answer, BaseException)
            pieces[span.item].append(
                answer if failed else {name: array[span.start : span.end] for name, array in answer.items()}
            )
    results: list[RowResult] = []
    for parts in pieces:
        failed = [part for part in parts if isinstance(part, BaseException)]
        if failed:
            results.append(failed[0])
        else:
            names = parts[0].keys() if parts else ()
            columns = {name: [part[name] for part in parts] for name in names}  # type: ignore[index]
            results.append({name: np.concatenate(column) for name, column in columns.items()})
    return results


def map_rows(items: Sequence[NDArray[Any]], limit: int, call: Callable[[NDArray[Any]], Outputs]) -> list[RowResult]:
    """`call` on the packed rows of `items`, one call after another."""
    calls = pack_rows(items, limit)
    answers: list[Outputs | BaseException] = []
    for packed in calls:
        try:
            answers.append(call(packed.rows))
        except Exception as error:  # noqa: BLE001 - the error of this call's inputs only
            answers.append(error)
    return unpack_rows(calls, answers, len(items))


async def gather_rows(
    items: Sequence[NDArray[Any]], limit: int, call: Callable[[NDArray[Any]], Awaitable[Outputs]]
) -> list[RowResult]:
    """`call` on the packed rows of `items`, all calls in flight at once."""
    calls = pack_rows(items, limit)
    answers = await asyncio.gather(*(call(packed.rows) for packed in calls), return_exceptions=True)
    return unpack_rows(calls, answers, len(items))
