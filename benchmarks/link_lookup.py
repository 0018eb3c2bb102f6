"""What the broken-link check costs a push unit: its keys and links loaded with the broken marks
(``links.load_for_target``) against without (``keys.load``), 200 keys, on the demo data.

    python -m benchmarks.link_lookup [--runs 500]

Standalone (not in ``make bench``'s ORDER): it prints medians and p95s of one query pair on a
fresh database with the demo seeded and every 50th record's link to ERP 2 broken.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from engine.store import demo, keys, links
from tests.support import services


async def _time(run: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    for _ in range(min(runs, 50)):  # warm the plan and the cache
        await run()
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        await run()
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return took[len(took) // 2], took[int(len(took) * 0.95)]


async def main(runs: int) -> None:
    name = services.unique("bench_links")
    await services.create_database(name, migrated=True)
    try:
        conn = await asyncpg.connect(services.database_url(name))
        try:
            await demo.seed(conn)
            await conn.execute(
                "INSERT INTO broken_links (connection_id, internal_key_id, erp_actor_type, "
                "erp_key, broken_by) SELECT 2, id, 'Customer', 'x', 'bench' FROM internal_keys "
                "WHERE id % 50 = 0"
            )
            await conn.execute("ANALYZE")
            ids = list(range(1, 201))
            for label, run in (
                ("keys.load (before)", lambda: keys.load(conn, ids, 2)),
                ("links.load_for_target", lambda: links.load_for_target(conn, ids, 2)),
            ):
                median, p95 = await _time(run, runs)
                print(f"{label:24} median {median:.3f} ms  p95 {p95:.3f} ms  ({runs} runs)")
        finally:
            await conn.close()
    finally:
        await services.drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    asyncio.run(main(parser.parse_args().runs))
