"""Stop (or crash) and restart a throwaway RabbitMQ node mid-batch: nothing lost or doubled.

Two worker processes resync all 3,000 demo records through their own RabbitMQ node (never the
shared broker on 5672). Halfway the node's app is stopped, or the node is SIGKILLed; the workers
notice (readiness turns 503), the node comes back, and without any manual step the workers
re-attach (the broker counts one consumer per worker on each queue again) and the task
completes. Each run prints its lost/duplicate figures.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import aiohttp
import asyncpg
import pytest

from engine.devservices.nodes import RabbitNode
from tests.support import demo_workers, services
from tests.support.service import AUTH, RESYNC
from tests.support.waiting import wait_for


# The test's own waits add up past the default 120 s: a slow recovery must fail in the wait
# that names the step (with the workers' logs), not in pytest-timeout's stack dump.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("outage", ["stop_app", "kill"])
async def test_broker_restart_mid_batch_loses_and_doubles_nothing(
    database: str, db: asyncpg.Connection, rabbit: RabbitNode, outage: str
) -> None:
    """``stop_app``: the broker shuts down cleanly; ``kill``: SIGKILL of the node (a crash)."""
    await demo_workers.seed_demo(database)
    prefix = "erpsync-faults"
    message_id = uuid.uuid4().hex
    async with demo_workers.workers(
        database,
        rabbit.url,
        prefix,
        delay_ms=2000,  # about 16 s of work: the outage surely falls in the middle
        ERPSYNC_ENGINE__CHUNK_SIZE="100",
        ERPSYNC_BROKER__PREFETCH="2",
    ) as group:
        workers = [await group.start("one"), await group.start("two")]
        assert (
            await demo_workers.consumer_counts(rabbit.url, prefix)
            == demo_workers.ALL_CONSUMED_BY_TWO
        )
        if outage == "kill":
            # RabbitMQ 3.10 can leave a quorum queue declared a few seconds before a crash
            # without a leader for good after the restart ("leader not known";
            # rabbitmq-server#10070; seen here when the kill came < 5 s after the workers
            # declared push.2). That broker defect is not what this test is about: a clean
            # restart first makes the topology durable, then the crash hits a settled broker.
            await asyncio.to_thread(rabbit.stop_app)
            await asyncio.to_thread(rabbit.start_app)
            await wait_for(
                lambda: demo_workers.consumer_counts(rabbit.url, prefix),
                lambda c: c == demo_workers.ALL_CONSUMED_BY_TWO,
                timeout=60,
                what="the workers to re-attach after the clean restart",
            )
        await services.publish_command(
            prefix, b'{"ErpConnectionId": 0, "InternalKeyIds": []}', message_id, rabbit.url
        )
        task = await wait_for(
            lambda: demo_workers.task_progress(db, message_id),
            # planned (total_chunks is set when planning ends: an outage during planning would
            # count a second start) and some chunks and units done
            lambda row: row is not None and row["total_chunks"] > 0 and row["done_chunks"] >= 4,
            timeout=60,
            what="planning to end and some chunks to be done",
        )
        assert task is not None and task["state"] == "Started", "too fast"

        await asyncio.to_thread(rabbit.stop_app if outage == "stop_app" else rabbit.kill)
        for worker in workers:
            await wait_for(
                worker.ready, lambda ok: not ok, timeout=30, what=f"{worker.name} to see it"
            )
        during = await demo_workers.task_progress(db, message_id)
        assert during is not None and during["state"] == "Started", "too late"
        await asyncio.to_thread(rabbit.start_app if outage == "stop_app" else rabbit.start)

        try:
            done = await wait_for(
                lambda: demo_workers.task_progress(db, message_id),
                lambda row: row is not None and row["state"] in ("Succeeded", "Failed"),
                timeout=120,
                what="the task to finish after the outage",
            )
        except AssertionError as exc:
            tails = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in workers)
            raise AssertionError(f"{exc}\n{tails}") from None
        counts = await wait_for(
            lambda: demo_workers.consumer_counts(rabbit.url, prefix),
            lambda c: c == demo_workers.ALL_CONSUMED_BY_TWO,
            timeout=30,
            what="one consumer per worker on each queue",
        )
        for worker in workers:
            assert await worker.ready(), worker.log()[-3000:]
        logs = "".join(worker.log() for worker in workers)

    assert done is not None and during is not None
    figures = await demo_workers.accounting(db, done["id"])
    depths = await demo_workers.queue_depths(rabbit.url, prefix)
    print(
        f"broker {outage}: {figures}, chunks and units done at the outage "
        f"{during['done_chunks']}/{during['total_chunks'] + during['retry_chunks']}, "
        f"consumers after {counts}, queues after {depths}, "
        f"re-subscriptions {logs.count('consumer re-attached')}"
    )
    demo_workers.assert_whole_batch_done(done, figures)
    assert done["start_count"] == 1
    assert depths == demo_workers.NOTHING_QUEUED
    assert "broker reconnected" in logs
    # The supervisor, not aio-pika's restore, re-attached each worker's four subscriptions
    # (commands, chunks and the push queues of ERP 1 and 2, each push queue on its own channel).
    assert logs.count("consumer re-attached") >= 8


async def test_sigterm_while_the_broker_is_down_still_exits_within_the_drain_deadline(
    database: str, rabbit: RabbitNode
) -> None:
    await demo_workers.seed_demo(database)
    drain = 6.0
    async with demo_workers.workers(
        database, rabbit.url, "erpsync-faults", ERPSYNC_WORKER__DRAIN_TIMEOUT=str(drain)
    ) as group:
        worker = await group.start("lonely")
        await asyncio.to_thread(rabbit.stop_app)
        await wait_for(worker.ready, lambda ok: not ok, timeout=30, what="the outage")
        sent = worker.signal(signal.SIGTERM)
        code = await worker.wait(timeout=drain + 30)
        took = time.monotonic() - sent
        log = worker.log()
    print(f"SIGTERM during a broker outage: exit {code} after {took:.1f}s")
    assert code == 0, log[-3000:]
    assert took <= drain, f"exit took {took:.1f}s > drain timeout {drain}s"


POSTS = 2000


@pytest.mark.timeout(600)
async def test_broker_flapping_under_2000_posts(
    database: str, db: asyncpg.Connection, rabbit: RabbitNode
) -> None:
    """An api and two workers; 2,000 resync POSTs (one or two records each, every demo record in
    one) while the broker is stopped and started three times. Every 204 runs, no 503 runs, and
    every change is logged exactly once: the tasks and a resync-all for the refused records log
    a clean run's changes, and a second resync-all finds nothing left differing."""
    await demo_workers.seed_demo(database)
    ids = [r[0] for r in await db.fetch("SELECT id FROM internal_keys ORDER BY id")]
    prefix = "erpsync-flap"
    async with demo_workers.workers(
        database,
        rabbit.url,
        prefix,
        ERPSYNC_BROKER__PUBLISH_TIMEOUT="2",
        ERPSYNC_BROKER__CONNECT_TIMEOUT="2",
    ) as group:
        api = await group.start("api", "api")
        workers = [await group.start("one"), await group.start("two")]
        base = f"http://127.0.0.1:{api.port}"
        statuses: dict[int, int] = {}
        answered: list[int] = []

        async with aiohttp.ClientSession(headers=AUTH) as http:

            async def post(i: int) -> None:
                keys = [ids[i], *([ids[i + POSTS]] if i + POSTS < len(ids) else [])]
                async with http.post(
                    base + RESYNC, json={"ErpConnectionId": 0, "InternalKeyIds": keys}
                ) as response:
                    assert response.status in (204, 503), await response.text()
                    if response.status == 204:
                        statuses[int(response.headers["X-Batch-Task-Id"])] = 204
                    answered.append(response.status)

            async def client(lane: int) -> None:
                for i in range(lane, POSTS, 16):
                    await post(i)

            async def flap() -> None:
                for at in (300, 800, 1300):
                    await wait_for(
                        lambda: _now(len(answered)),
                        lambda n, at=at: n >= at,  # type: ignore[misc]
                        timeout=300,
                        what=f"{at} answers",
                    )
                    await asyncio.to_thread(rabbit.stop_app)
                    refused = answered.count(503)
                    await wait_for(
                        lambda: _now(answered.count(503)),
                        lambda n, r=refused: n >= r + 16 or len(answered) == POSTS,  # type: ignore[misc]
                        timeout=60,
                        what="the outage to be answered 503",
                    )
                    await asyncio.to_thread(rabbit.start_app)

            await asyncio.gather(flap(), *(client(lane) for lane in range(16)))
            await wait_for(
                lambda: db.fetchval(
                    "SELECT count(*) FROM batch_tasks WHERE state NOT IN "
                    "('Succeeded', 'Failed', 'SucceededManualCleanup')"
                ),
                lambda n: n == 0,
                timeout=300,
                what="every task to finish",
            )

            async def resync_all() -> int:
                async with http.post(
                    base + RESYNC, json={"ErpConnectionId": 0, "InternalKeyIds": []}
                ) as response:
                    assert response.status == 204, await response.text()
                    task_id = int(response.headers["X-Batch-Task-Id"])
                await wait_for(
                    lambda: db.fetchval("SELECT state FROM batch_tasks WHERE id = $1", task_id),
                    lambda s: s in ("Succeeded", "Failed"),
                    timeout=180,
                    what="the resync-all",
                )
                return task_id

            repair = await resync_all()
            check = await resync_all()
        logs = "".join(w.log() for w in workers)

    rows = await db.fetch("SELECT id, state, response, start_count FROM batch_tasks")
    accepted = [r for r in rows if r["id"] in statuses]
    refused = [r for r in rows if r["id"] not in statuses and r["id"] not in (repair, check)]
    logged = await db.fetchval("SELECT count(*) FROM sync_log")
    duplicated = await db.fetchval(
        "SELECT count(*) - count(DISTINCT (connection_id, internal_key_id, erp_field)) "
        "FROM sync_log"
    )
    last = await db.fetchval("SELECT count(*) FROM sync_log WHERE task_id = $1", check)
    doubled = await db.fetchval(
        "SELECT count(*) - count(DISTINCT (task_id, internal_key_id, connection_id)) "
        "FROM record_outcomes"
    )
    errors = [line for line in logs.splitlines() if '"level": "error"' in line]
    print(
        f"broker flapping: {len(accepted)} accepted, {len(refused)} refused, "
        f"sync log {logged}, error lines {len(errors)}"
    )
    assert len(accepted) + len(refused) == POSTS and answered.count(503) >= 48
    odd = [dict(r) for r in accepted if (r["state"], r["start_count"]) != ("Succeeded", 1)]
    assert odd == [], odd[:3]
    odd = [dict(r) for r in refused if r["state"] != "Failed" or "Not queued" not in r["response"]]
    assert odd == [], odd[:3]
    assert (duplicated, doubled) == (0, 0)
    assert logged == demo_workers.DEMO_CLEAN_CHANGES
    assert last == 0  # nothing left differing
    assert errors == [], errors[:5]


async def _now(value: int) -> int:
    return value
