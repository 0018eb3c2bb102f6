"""Three workers share the continuous sync: each connection runs once per interval in all."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from connectors.memory import MemoryStore
from engine.settings import SyncSettings
from tests.support.service import Service
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

INTERVAL = 1.0
INTERVALS = 10


async def test_three_workers_run_each_connection_once_per_interval(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    settings = memory_settings(database, broker_prefix, {c: s.name for c, s in stores.items()})
    sync = SyncSettings(enabled=True, initial_status="running", interval=INTERVAL, tick=0.05)
    settings = settings.model_copy(update={"sync": sync})
    async with contextlib.AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(Service(settings, api=False)) for _ in range(3)]
        assert len(workers) == 3
        await wait_for(
            lambda: db.fetchval("SELECT count(*) FROM sync_connections WHERE runs > 0"),
            lambda n: n == 3,
            timeout=30,
        )
        before = {
            r[0]: r[1] for r in await db.fetch("SELECT connection_id, runs FROM sync_connections")
        }
        started = await db.fetchval("SELECT now()")
        seen_by: set[str] = set()
        # Sample who ran what while ten intervals pass (never a sleep-for-luck: the count is
        # read at the end; the samples only show the work is shared).
        deadline = asyncio.get_running_loop().time() + INTERVAL * INTERVALS
        while asyncio.get_running_loop().time() < deadline:
            seen_by |= {
                r[0]
                for r in await db.fetch(
                    "SELECT last_run_by FROM sync_connections WHERE last_run_by IS NOT NULL"
                )
            }
            await asyncio.sleep(0.1)
        elapsed = float(await db.fetchval("SELECT extract(epoch FROM now() - $1)", started))
        after = {
            r[0]: r[1] for r in await db.fetch("SELECT connection_id, runs FROM sync_connections")
        }

    runs = {cid: after[cid] - before[cid] for cid in (0, 1, 2)}
    # Runs sit on each connection's grid of INTERVAL seconds: a window of `elapsed` seconds
    # holds floor or ceil of elapsed / INTERVAL grid points, never more.
    low, high = int(elapsed // INTERVAL), int(elapsed // INTERVAL) + 1
    assert all(low <= n <= high for n in runs.values()), (runs, elapsed)
    assert len(seen_by) >= 2, seen_by  # more than one worker ran connections
    print(
        f"[continuous workers] runs per connection over {elapsed:.1f}s: {runs}; "
        f"workers seen: {len(seen_by)}"
    )
