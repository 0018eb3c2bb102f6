"""What two constructs on the front door's hot path cost per request (session 6, issue 19).

``python -m benchmarks.hot_path_micro`` times, on uvloop, a trivial awaited step:

* through an ``asynccontextmanager`` (``TaskIntake.create`` for a request without an
  Idempotency-Key until session 6) against a direct call (``TaskIntake.create_unkeyed``);
* inside ``asyncio.timeout(5)`` and ``asyncio.timeout(None)`` against none: before session 6
  every publish ran inside the publisher's own ``asyncio.timeout`` and aiormq's
  ``asyncio.timeout(None)``; now only inside aiormq's, given what is left of the timeout.

Prints microseconds per call (best of 3 rounds of 200,000). In-situ A/B: ``python -m
benchmarks.front_door --api-processes 1 --no-open-loop --variants intake_cm,publish_timeout_outer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from engine.runtime.eventloop import new_event_loop

CALLS = 200_000


async def _step() -> int:
    return 1


@contextlib.asynccontextmanager
async def _through_context_manager() -> AsyncIterator[int]:
    yield await _step()


async def _context_manager() -> int:
    async with _through_context_manager() as value:
        return value


async def _timeout(seconds: float | None) -> int:
    async with asyncio.timeout(seconds):
        return await _step()


async def _two_timeouts() -> int:
    async with asyncio.timeout(5):
        return await _timeout(None)


async def _time(call: Callable[[], Awaitable[int]]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(CALLS):
            await call()
        best = min(best, time.perf_counter() - started)
    return best / CALLS * 1e6


async def _main() -> None:
    cases: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("direct call", _step),
        ("through an asynccontextmanager", _context_manager),
        ("asyncio.timeout(None)", lambda: _timeout(None)),
        ("asyncio.timeout(5)", lambda: _timeout(5)),
        ("timeout(5) around timeout(None) (before)", _two_timeouts),
    ]
    for name, call in cases:
        print(f"   {name:45s} {await _time(call):6.2f} us per call")


def main() -> None:
    loop = new_event_loop()
    try:
        loop.run_until_complete(_main())
    finally:
        loop.close()


if __name__ == "__main__":
    main()
