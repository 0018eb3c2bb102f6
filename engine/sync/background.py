"""Stopping the engine's background loops (sweeper, notifier, continuous sync scheduler)."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_until_done(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` until it has finished, and drop its outcome.

    Cancel again until it is done: a library that swallows one cancellation (seen in channel
    operations) must not keep the loop, and the shutdown, running.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
