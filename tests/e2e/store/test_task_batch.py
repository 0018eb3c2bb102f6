"""The front door's micro-batched task inserts (engine.store.task_batch) against PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from engine.settings import DatabaseSettings
from engine.store import tasks
from engine.store.pool import create_pool
from engine.store.task_batch import BatcherClosed, TaskBatcher
from tests.support import services


async def _create(batcher: TaskBatcher, n: int, message_id: str | None = None) -> int:
    return await batcher.create(
        source_connection_id=n % 3,
        request={"ErpConnectionId": n % 3, "InternalKeyIds": [n, n + 1]},
        message_id=message_id or uuid.uuid4().hex,
    )


async def test_concurrent_requests_get_their_own_ids(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    batcher = TaskBatcher(pool, max_batch=16)
    message_ids = [uuid.uuid4().hex for _ in range(100)]
    ids = await asyncio.gather(*(_create(batcher, n, m) for n, m in enumerate(message_ids)))
    assert len(set(ids)) == 100
    rows = {r["id"]: r for r in await db.fetch("SELECT * FROM batch_tasks")}
    assert len(rows) == 100
    for n, (task_id, message_id) in enumerate(zip(ids, message_ids, strict=True)):
        row = rows[task_id]
        assert row["message_id"] == message_id
        assert row["source_connection_id"] == n % 3
        assert row["state"] == "New" and row["name"] == tasks.RESYNC_TASK_NAME
        assert json.loads(row["request"]) == {
            "ErpConnectionId": n % 3,
            "InternalKeyIds": [n, n + 1],
        }
        assert row["description"] == tasks.describe_source(n % 3)
    assert batcher.rows == 100
    assert 100 / 16 <= batcher.batches < 100  # batched, and never more than max_batch per batch
    await batcher.close()


async def test_a_known_message_id_returns_the_existing_task(pool: asyncpg.Pool) -> None:
    batcher = TaskBatcher(pool)
    existing = await tasks.create(
        pool, source_connection_id=0, request={"InternalKeyIds": [1]}, message_id="m-1"
    )
    # Twice in one batch, and once beside a new one.
    ids = await asyncio.gather(
        _create(batcher, 1, "m-1"), _create(batcher, 2, "m-1"), _create(batcher, 3, "m-2")
    )
    assert ids[0] == ids[1] == existing
    assert ids[2] != existing
    await batcher.close()


async def test_a_failed_insert_fails_every_waiter_of_its_batch(
    database: str, db: asyncpg.Connection
) -> None:
    settings = DatabaseSettings.model_validate({"url": services.database_url(database)})
    pool = await create_pool(settings, max_size=1)
    batcher = TaskBatcher(pool)
    await pool.close()  # every acquire now fails
    results = await asyncio.gather(
        *(_create(batcher, n) for n in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, asyncpg.InterfaceError) for r in results), results
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0


async def test_a_statement_error_reaches_every_waiter_and_the_next_batch_still_works(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    batcher = TaskBatcher(pool)
    await db.execute(
        "ALTER TABLE batch_tasks ADD CONSTRAINT no_source_7 CHECK (source_connection_id <> 7)"
    )
    bad = [
        batcher.create(source_connection_id=s, request={}, message_id=uuid.uuid4().hex)
        for s in (1, 7, 2)
    ]
    results = await asyncio.gather(*bad, return_exceptions=True)
    assert all(isinstance(r, asyncpg.CheckViolationError) for r in results), results
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0  # all or nothing
    assert await _create(batcher, 1) > 0
    await batcher.close()


async def test_close_writes_the_queued_rows_and_refuses_new_ones(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    batcher = TaskBatcher(pool, max_batch=4)
    waiters = [asyncio.create_task(_create(batcher, n)) for n in range(20)]
    await asyncio.sleep(0)  # every waiter has queued its row
    await batcher.close()
    assert all(w.done() for w in waiters)
    ids = [w.result() for w in waiters]
    assert len(set(ids)) == 20
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 20
    with pytest.raises(BatcherClosed):
        await _create(batcher, 99)


async def test_a_cancelled_waiter_does_not_hold_up_the_others(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    batcher = TaskBatcher(pool)
    waiters = [asyncio.create_task(_create(batcher, n)) for n in range(5)]
    await asyncio.sleep(0)
    waiters[4].cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[4], asyncio.CancelledError)
    assert len({r for r in results[:4] if isinstance(r, int)}) == 4
    await batcher.close()
