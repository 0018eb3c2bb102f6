"""Duplicate deliveries across workers: a chunk runs once, every change is logged once."""

from __future__ import annotations

from typing import Any

import aio_pika
import asyncpg

from connectors.memory import MemoryStore
from tests.support import services
from tests.support.service import Service, link, sync_log
from tests.support.settings import memory_settings

KEYS = range(1, 21)


async def test_a_duplicate_chunk_in_another_worker_is_dropped_not_run_twice(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    for i in KEYS:
        stores[0].put("Contact", str(i), {"name": f"N{i}", "phone": f"{i}", "email": f"{i}@crm"})
        stores[1].put("Customer", f"A{i}", {"name": f"old{i}", "phone": f"{i}", "email": "x"})
        stores[2].put("Customer", f"B{i}", {"company": f"N{i}", "tel": "0", "mail": f"{i}@crm"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}"), 2: ("Customer", f"B{i}")})
    names = {cid: s.name for cid, s in stores.items()}
    # Slow targets keep both copies of the chunk in flight at the same time.
    settings = memory_settings(
        database, broker_prefix, names, overrides={1: {"latency_ms": 300}, 2: {"latency_ms": 300}}
    )
    async with Service(settings) as first, Service(settings, api=False):
        task_id = await first.resync(0, list(KEYS))
        connection = await aio_pika.connect(services.AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(broker_prefix)
            await exchange.publish(
                aio_pika.Message(
                    b'{"TaskId": %d, "ChunkNo": 0}' % task_id,
                    message_id=f"chunk-{task_id}-0",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key="resync.chunk",
            )
        info = await first.finished(task_id)

    assert info["State"] == "Succeeded", info
    rows = await sync_log(db, task_id)
    expected: list[tuple[Any, ...]] = []
    for i in KEYS:
        expected.append((1, i, "name", "name", False, f"old{i}", f"N{i}"))
        expected.append((2, i, "tel", "phone", False, "0", f"{i}"))
    assert rows == sorted(expected)  # every change exactly once, none lost
    outcomes = await db.fetchval("SELECT count(*) FROM record_outcomes WHERE task_id = $1", task_id)
    assert outcomes == 2 * len(KEYS)
