"""The pixel budget: large images wait their turn in arrival order; one larger than the budget runs alone."""

from __future__ import annotations

import asyncio

import pytest

from adapter.budget import PixelBudget


def test_holds_up_to_the_capacity_then_queues_in_order() -> None:
    async def scenario() -> list[str]:
        budget = PixelBudget(410)
        order: list[str] = []
        release = asyncio.Event()

        async def job(name: str, pixels: int) -> None:
            weight = await budget.acquire(pixels)
            order.append(f"{name} in (held {budget.held})")
            await release.wait()
            budget.release(weight)

        tasks = [asyncio.create_task(job(n, p)) for n, p in [("a", 200), ("b", 200), ("c", 200), ("d", 10)]]
        await asyncio.sleep(0.01)
        assert budget.held == 400 and len(order) == 2, "c waits, and d behind it (no overtaking)"
        release.set()
        await asyncio.gather(*tasks)
        assert budget.held == 0
        return order

    order = asyncio.run(scenario())
    assert [entry.split()[0] for entry in order] == ["a", "b", "c", "d"]


def test_an_image_larger_than_the_budget_runs_alone() -> None:
    async def scenario() -> None:
        budget = PixelBudget(100)
        weight = await budget.acquire(1_000_000)
        assert weight == budget.held == 100
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(budget.acquire(1), timeout=0.05)
        budget.release(weight)
        assert budget.held == 0

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_frees_its_place() -> None:
    async def scenario() -> None:
        budget = PixelBudget(100)
        first = await budget.acquire(80)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(budget.acquire(50), timeout=0.05)  # gives up at the head of the queue
        assert await asyncio.wait_for(budget.acquire(20), timeout=0.5) == 20, "not blocked by the one that left"
        budget.release(first)
        budget.release(20)
        assert budget.held == 0 and not budget._waiting

    asyncio.run(scenario())
