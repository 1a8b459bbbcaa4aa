"""Row packing (what the OCR model does with its detector and recogniser rows, and faces with its max batch)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mt_photos_triton.triton.rows import gather_rows, map_rows, pack_rows, unpack_rows


def rows(count: int, width: int, first: int) -> np.ndarray:
    """`count` rows of shape [2, width], row r filled with first + r (so each row says where it came from)."""
    return np.repeat(np.arange(first, first + count, dtype=np.float32), 2 * width).reshape(count, 2, width)


class Recorder:
    """The model: answers each call with its rows doubled (`double`) and their sums (`sum`), and records the calls."""

    def __init__(self, fail_containing: float | None = None) -> None:
        self.calls: list[np.ndarray] = []
        self.fail_containing = fail_containing

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(batch)
        if self.fail_containing is not None and (batch == self.fail_containing).any():
            raise RuntimeError("this call failed")
        return {"double": batch * 2, "sum": batch.reshape(len(batch), -1).sum(axis=1)}


def test_equal_shapes_share_calls_of_at_most_the_limit() -> None:
    items = [rows(3, 4, 0), rows(2, 4, 10), rows(4, 4, 20)]  # 9 rows of one shape
    calls = pack_rows(items, limit=4)
    assert [len(c.rows) for c in calls] == [4, 4, 1]
    # the second item's rows straddle the first two calls
    assert [(s.item, s.start, s.end) for s in calls[0].spans] == [(0, 0, 3), (1, 3, 4)]
    assert [(s.item, s.start, s.end) for s in calls[1].spans] == [(1, 0, 1), (2, 1, 4)]
    assert [(s.item, s.start, s.end) for s in calls[2].spans] == [(2, 0, 1)]


def test_mixed_shapes_never_share_a_call_and_every_item_gets_its_own_rows_back() -> None:
    items = [rows(2, 4, 0), rows(3, 6, 10), rows(1, 4, 20), rows(5, 6, 30), rows(1, 8, 40)]
    model = Recorder()
    results = map_rows(items, 3, model)
    for call in model.calls:
        assert len(call) <= 3
    assert sorted(c.shape[1:] for c in model.calls) == [(2, 4), (2, 6), (2, 6), (2, 6), (2, 8)]
    assert len(model.calls) == 5  # 3 rows of [2,4] in 1 call, 8 of [2,6] in 3, 1 of [2,8] in 1
    for item, result in zip(items, results):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["double"], item * 2)
        np.testing.assert_array_equal(result["sum"], item.reshape(len(item), -1).sum(axis=1))


def test_a_failed_call_fails_exactly_the_items_in_it() -> None:
    # limit 2: calls [item0 r0, item0 r1], [item1 r0, item2 r0], [item2 r1]; the second fails
    items = [rows(2, 4, 0), rows(1, 4, 10), rows(2, 4, 20), rows(1, 6, 30)]
    results = map_rows(items, 2, Recorder(fail_containing=10))
    assert isinstance(results[1], RuntimeError) and isinstance(results[2], RuntimeError)
    assert isinstance(results[0], dict) and isinstance(results[3], dict)
    np.testing.assert_array_equal(results[0]["double"], items[0] * 2)
    np.testing.assert_array_equal(results[3]["double"], items[3] * 2)


def test_an_item_over_several_calls_fails_when_any_of_them_fails() -> None:
    items = [rows(5, 4, 0), rows(1, 4, 10)]
    results = map_rows(items, 2, Recorder(fail_containing=4))  # the third call: item 0's last row, item 1
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    results = map_rows(items, 2, Recorder(fail_containing=1))  # the first call: item 0 only
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], dict)


def test_async_calls_are_all_in_flight_and_unpacked_alike() -> None:
    items = [rows(3, 4, 0), rows(2, 6, 10), rows(3, 4, 20)]
    model = Recorder(fail_containing=10)
    in_flight: list[int] = []
    running = 0

    async def call(batch: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal running
        running += 1
        await asyncio.sleep(0.01)
        in_flight.append(running)
        running -= 1
        return model(batch)

    results = asyncio.run(gather_rows(items, 4, call))
    assert max(in_flight) == 3  # [2,4]: 6 rows in 2 calls, [2,6]: 2 rows in 1 call, all at once
    assert isinstance(results[1], RuntimeError)
    for index in (0, 2):
        np.testing.assert_array_equal(results[index]["double"], items[index] * 2)


def test_items_without_rows_go_in_no_call() -> None:
    items = [rows(0, 4, 0), rows(2, 4, 10), np.zeros((0, 2, 9), np.float32)]
    calls = pack_rows(items, 8)
    assert len(calls) == 1 and [s.item for s in calls[0].spans] == [1]
    results = unpack_rows(calls, [Recorder()(calls[0].rows)], len(items))
    assert results[0] == {} and results[2] == {}
    np.testing.assert_array_equal(results[1]["double"], items[1] * 2)


def test_nothing_to_do_and_bad_limits() -> None:
    assert pack_rows([], 4) == []
    assert map_rows([], 4, Recorder()) == []
    with pytest.raises(ValueError, match="at least 1"):
        pack_rows([rows(1, 4, 0)], 0)
    with pytest.raises(ValueError):  # one answer per call, no fewer
        unpack_rows(pack_rows([rows(3, 4, 0)], 1), [{}], 1)
