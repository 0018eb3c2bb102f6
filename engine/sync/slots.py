"""A gate's concurrency slots: a counting semaphore that serves the small-task lane first.

A large task keeps every slot of a target's gate busy and a queue of its calls waiting; a small
task's call (an interactive caller waiting, see docs/engine.md "Small-task lane") then takes the
next free slot instead of queueing behind them. Within a lane, waiters are served in order.
Small tasks are bounded in size (``engine.small_task_records``), so the bulk lane still moves
whenever the small one has nothing waiting.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType

from engine.messaging.publishing import in_small_lane


class LaneSlots:
    """``value`` slots; ``async with slots:`` takes one for the current lane."""

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError("a gate needs at least one slot")
        self._free = value
        self._small: collections.deque[asyncio.Future[None]] = collections.deque()
        self._bulk: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> tuple[int, int]:
        """(small-lane, bulk-lane) callers waiting for a slot."""
        return (
            sum(not f.done() for f in self._small),
            sum(not f.done() for f in self._bulk),
        )

    async def acquire(self, small: bool | None = None) -> None:
        """Take a slot, waiting behind this lane's earlier callers (small before bulk)."""
        if small is None:
            small = in_small_lane()
        if self._free > 0 and not any(self.waiting):
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._small if small else self._bulk
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            elif waiter in queue:  # a release may have dropped it already
                queue.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the slot to the first small-lane waiter, else the first bulk one, else free it."""
        for queue in (self._small, self._bulk):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
