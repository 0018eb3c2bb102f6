"""The task-finished notification (migration 0008) and TaskWaiter: woken by NOTIFY whatever
statement ends a task, and still answering when its LISTEN connection is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.settings import DatabaseSettings
from engine.store import tasks
from engine.store.finished import TaskWaiter
from engine.store.listener import Listener
from tests.support import services
from tests.support.waiting import wait_for


@pytest.fixture
def db_settings(database: str) -> DatabaseSettings:
    return DatabaseSettings.model_validate({"url": services.database_url(database)})


@pytest.fixture
async def waiter(db_settings: DatabaseSettings, pool: asyncpg.Pool) -> AsyncIterator[TaskWaiter]:
    # Polling far beyond the tests' patience: only a notification can wake a waiter in time.
    listener = Listener(db_settings)
    waiter = TaskWaiter(listener, pool, poll_interval=60)
    await listener.start()
    assert listener.listening
    yield waiter
    await listener.close()


async def new_task(pool: asyncpg.Pool) -> int:
    return await tasks.create(pool, source_connection_id=0, request={"InternalKeyIds": [1]})


async def ended_within(waiter: TaskWaiter, task_id: int, end: object, limit: float) -> float:
    with waiter.watch(task_id) as event:
        started = time.monotonic()
        waiting = asyncio.create_task(waiter.wait(task_id, event, 30))
        await asyncio.sleep(0)  # the waiter has read the task (not final) or is about to
        await end  # type: ignore[misc]
        row = await asyncio.wait_for(waiting, limit)
    assert row is not None and row["state"] in tasks.TERMINAL_STATES
    return time.monotonic() - started


async def test_every_way_a_task_ends_wakes_its_waiter(
    waiter: TaskWaiter, pool: asyncpg.Pool
) -> None:
    failed, unqueued, stopped = [await new_task(pool) for _ in range(3)]
    assert await ended_within(waiter, failed, tasks.fail(pool, failed, "no"), 10) < 10
    assert await ended_within(waiter, unqueued, tasks.fail_unqueued(pool, unqueued, "x"), 10) < 10
    assert await ended_within(waiter, stopped, tasks.stop(pool, stopped, "tje0"), 10) < 10


async def test_a_task_already_final_is_answered_at_once(
    waiter: TaskWaiter, pool: asyncpg.Pool
) -> None:
    task_id = await new_task(pool)
    await tasks.fail(pool, task_id, "before anybody waited")
    with waiter.watch(task_id) as event:
        row = await asyncio.wait_for(waiter.wait(task_id, event, 30), 5)
    assert row is not None and row["response"] == "before anybody waited"


async def test_a_lost_listen_connection_is_replaced_and_polling_covers_the_gap(
    db_settings: DatabaseSettings, pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    listener = Listener(db_settings)
    waiter = TaskWaiter(listener, pool, poll_interval=0.2)
    await listener.start()
    try:
        conn = listener._conn
        assert conn is not None
        await db.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await wait_for(lambda: asyncio.sleep(0, not listener.listening), what="the loss noticed")
        task_id = await new_task(pool)
        # Ended while (perhaps) nobody listens: the poll sees it.
        assert await ended_within(waiter, task_id, tasks.fail(pool, task_id, "gap"), 10) < 10
        await wait_for(lambda: asyncio.sleep(0, listener.listening), what="listening again")
        waiter.poll_interval = 60
        again = await new_task(pool)
        assert await ended_within(waiter, again, tasks.fail(pool, again, "back"), 10) < 10
    finally:
        await listener.close()


async def test_a_waiter_times_out_with_none(waiter: TaskWaiter, pool: asyncpg.Pool) -> None:
    task_id = await new_task(pool)
    with waiter.watch(task_id) as event:
        started = time.monotonic()
        assert await waiter.wait(task_id, event, 0.3) is None
    assert 0.3 <= time.monotonic() - started < 5
