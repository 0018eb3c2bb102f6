"""``erpsync api`` and ``erpsync worker`` as separate processes, as an operator runs them.

The front door process only publishes; two worker processes share the chunks of one batch, each
with its own health port on the same host, and both stop cleanly on SIGINT.
"""

from __future__ import annotations

import signal
import uuid
from typing import Any

import aiohttp
import asyncpg

from engine.store.tasks import TERMINAL_STATES
from tests.support import demo_workers, services
from tests.support.service import AUTH, RESYNC, TASK_INFO
from tests.support.waiting import wait_for


async def test_api_and_two_workers_share_one_batch(
    database: str, db: asyncpg.Connection, broker_prefix: str
) -> None:
    await demo_workers.seed_demo(database)
    async with demo_workers.workers(
        database,
        services.AMQP_URL,
        broker_prefix,
        delay_ms=300,
        ERPSYNC_ENGINE__CHUNK_SIZE="100",
        ERPSYNC_BROKER__PREFETCH="2",
    ) as group:
        api = await group.start("api", "api")
        one = await group.start("one")
        two = await group.start("two")
        assert len({api.port, one.port, two.port}) == 3
        counts = await demo_workers.consumer_counts(services.AMQP_URL, broker_prefix)
        assert counts == demo_workers.ALL_CONSUMED_BY_TWO  # the front door does not consume

        base = f"http://127.0.0.1:{api.port}"
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(
                base + RESYNC, json={"ErpConnectionId": 0, "InternalKeyIds": []}
            ) as response:
                assert response.status == 204, await response.text()
                task_id = int(response.headers["X-Batch-Task-Id"])

            async def info() -> dict[str, Any]:
                async with http.post(base + TASK_INFO, json={"Id": task_id}) as r:
                    body: dict[str, Any] = await r.json()
                    return body

            done = await wait_for(
                info, lambda i: i["State"] in TERMINAL_STATES, timeout=90, what="the batch"
            )
        for process in (api, one, two):
            process.signal(signal.SIGINT)
            assert await process.wait(timeout=30) == 0, process.log()[-3000:]
        committed = {p.name: p.log().count('"chunk committed"') for p in (api, one, two)}

    figures = await demo_workers.accounting(db, task_id)
    print(f"api + 2 workers: chunks committed per process {committed}, {figures}")
    assert done["State"] == "Succeeded", done
    assert done["StartCount"] == 1
    assert committed["api"] == 0
    assert committed["one"] > 0 and committed["two"] > 0
    # 30 planned chunks, then a push unit per chunk and target (2 ERPs)
    assert done["Statistics"]["PushUnits"] == 60
    assert committed["one"] + committed["two"] == done["Statistics"]["Chunks"] == 30 + 60
    assert figures["lost"] == 0 and figures["duplicate_sync_log"] == 0
    assert figures["sync_log"] == demo_workers.DEMO_CLEAN_CHANGES
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 1
    assert uuid.UUID(await db.fetchval("SELECT message_id FROM batch_tasks"))
