"""A gate's concurrency slots: the small-task lane's callers take the next free slot."""

from __future__ import annotations

import asyncio

import pytest

from engine.messaging.publishing import small_lane
from engine.sync.slots import LaneSlots


async def settle() -> None:
    """Let every ready task run until it blocks (a handful of loop iterations)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_small_lane_caller_goes_before_bulk_callers_that_waited_longer() -> None:
    slots = LaneSlots(1)
    order: list[str] = []
    release = asyncio.Event()

    async def call(name: str, small: bool) -> None:
        with small_lane(small):
            async with slots:
                order.append(name)
                await release.wait()

    holder = asyncio.create_task(call("holder", False))
    await settle()
    bulk = [asyncio.create_task(call(f"bulk{i}", False)) for i in range(3)]
    await settle()
    small = asyncio.create_task(call("small", True))
    await settle()
    assert slots.waiting == (1, 3) and order == ["holder"]
    release.set()
    await asyncio.gather(holder, small, *bulk)
    assert order == ["holder", "small", "bulk0", "bulk1", "bulk2"]
    assert slots.free == 1 and slots.waiting == (0, 0)


async def test_without_small_lane_callers_it_is_a_fifo_semaphore() -> None:
    slots = LaneSlots(2)
    order: list[int] = []
    gate = asyncio.Event()

    async def call(i: int) -> None:
        async with slots:
            order.append(i)
            await gate.wait()

    tasks = [asyncio.create_task(call(i)) for i in range(6)]
    await settle()
    assert order == [0, 1] and slots.free == 0
    gate.set()
    await asyncio.gather(*tasks)
    assert order == list(range(6)) and slots.free == 2


async def test_a_cancelled_waiter_loses_no_slot() -> None:
    slots = LaneSlots(1)
    await slots.acquire(small=False)
    waiting = asyncio.create_task(slots.acquire(small=True))
    later = asyncio.create_task(slots.acquire(small=False))
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    slots.release()
    await asyncio.wait_for(later, 1)  # the slot went to the next waiter, not to the cancelled
    slots.release()
    assert slots.free == 1


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    slots = LaneSlots(1)
    await slots.acquire(small=False)
    first = asyncio.create_task(slots.acquire(small=False))
    second = asyncio.create_task(slots.acquire(small=False))
    await settle()
    slots.release()  # hands the slot to ``first`` ...
    first.cancel()  # ... which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    slots.release()
    assert slots.free == 1 and slots.waiting == (0, 0)


async def test_a_release_between_a_cancel_and_its_handling_loses_nothing() -> None:
    slots = LaneSlots(1)
    await slots.acquire(small=False)
    waiting = asyncio.create_task(slots.acquire(small=True))
    await settle()
    waiting.cancel()  # its future is cancelled now; its handler runs only when it resumes
    slots.release()  # drops the cancelled future and frees the slot
    with pytest.raises(asyncio.CancelledError):  # the cancellation, not another error
        await waiting
    assert slots.free == 1 and slots.waiting == (0, 0)
    await asyncio.wait_for(slots.acquire(small=False), 1)


def test_a_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        LaneSlots(0)
