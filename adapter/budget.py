"""How many decoded pixels may be in flight at once: a pixel-weighted semaphore in front of Triton.

The Triton python models decode what the adapter sends them (~3 bytes a pixel as RGB, more while converting),
so four 200 MP uploads at once would hold ~2.4 GB in decode buffers at once. Each image request holds its
header's pixel count here for as long as its inference runs; beyond the budget, requests wait their turn in
arrival order (a large image is not overtaken forever by small ones). An image larger than the whole budget
still runs, alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class PixelBudget:
    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("the pixel budget must be positive")
        self.capacity = capacity
        self.held = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def weight(self, pixels: int) -> int:
        return min(max(pixels, 1), self.capacity)

    async def acquire(self, pixels: int) -> int:
        """Wait until `pixels` fit (FIFO); returns the weight to release."""
        weight = self.weight(pixels)
        if not self._waiting and self.held + weight <= self.capacity:
            self.held += weight
            return weight
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((weight, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(weight)  # granted just as the caller gave up
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiting.remove((weight, turn))
                self._wake()  # a large waiter leaving may let the ones behind it in
            raise
        return weight

    def release(self, weight: int) -> None:
        self.held -= weight
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            weight, turn = self._waiting[0]
            if turn.done():  # its caller gave up
                self._waiting.popleft()
                continue
            if self.held + weight > self.capacity:
                return
            self._waiting.popleft()
            self.held += weight
            turn.set_result(None)
