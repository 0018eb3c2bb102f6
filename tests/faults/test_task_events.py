"""Exactly one task.finished event per task when things break (issue 17).

A worker SIGKILLed right after the commit that finished a task (a test-only hook,
``ERPSYNC_TEST_CRASH_AFTER_FINISH``, kills it before it can do anything else): the event row was
committed with the task, and another worker's relay publishes it, once. A broker stopped while
events are due: the relay's publishes fail and are retried after the restart, once each.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from engine.devservices.nodes import RabbitNode
from tests.support.events import EventQueue
from tests.support.rig import Rig, rig
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(300)


async def event_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM task_events ORDER BY task_id"))


async def test_sigkill_right_after_the_finishing_commit_still_publishes_one_event(
    the_rig: Rig,
) -> None:
    await the_rig.seed(60)
    config = the_rig.config()
    async with EventQueue(the_rig.prefix, the_rig.amqp_url) as queue:
        doomed = await the_rig.children.start(
            "doomed",
            "engine",
            ["serve", "--config", str(config), "--port", "{port}"],
            env={"ERPSYNC_TEST_CRASH_AFTER_FINISH": "1"},
        )
        task_id = await the_rig.submit()
        code = await doomed.wait(timeout=120)
        assert code == -9, doomed.tail()  # it killed itself at the hook
        task = await the_rig.task(task_id)
        assert task["state"] == "Succeeded", task
        conn = await the_rig.connect()
        try:
            [row] = await event_rows(conn)
            # committed with the task; the worker died before its relay could publish it
            assert row["task_id"] == task_id and row["published_at"] is None
            assert await queue.drain() == []

            await the_rig.start_worker(the_rig.config())
            received = await wait_for(queue.drain, lambda r: len(r) >= 1, what="the event")
            await wait_for(
                lambda: event_rows(conn),
                lambda rows: all(r["published_at"] is not None for r in rows),
                what="the event marked published",
            )
        finally:
            await conn.close()
        assert await queue.drain() == received
        assert queue.by_task() == {task_id: 1}
        assert received[0].message_id == f"task-finished-{task_id}"
        assert received[0].body["State"] == "Succeeded"
        assert received[0].body["Counts"]["DoneRecords"] == 60


async def test_events_due_while_the_broker_is_down_are_published_once_after_it_returns(
    broker_prefix: str, tmp_path: Path, rabbit: RabbitNode
) -> None:
    async with (
        rig(broker_prefix, tmp_path, rabbit.url) as the_rig,
        EventQueue(broker_prefix, rabbit.url) as queue,
    ):
        await the_rig.seed(50)
        config = the_rig.config(erp1={"faults": {"latency": 0.2}}, broker={"prefetch": 2})
        await the_rig.start_worker(config)
        await the_rig.start_worker(config)
        before = await the_rig.submit()
        assert (await the_rig.finished(before))["state"] == "Succeeded"
        await wait_for(queue.drain, lambda r: len(r) == 1, what="the first task's event")

        during = await the_rig.submit()
        await the_rig.wait_chunks_done(during, 2)
        conn = await the_rig.connect()
        try:
            await asyncio.to_thread(rabbit.stop_app)
            # A task that ends while the broker is away (as a stop would end it): its event
            # is due at once, and each relay pass fails to publish it until the broker is back.
            ended = await conn.fetchval(
                "INSERT INTO batch_tasks (name, source_connection_id, request) "
                "VALUES ('ForceResyncBatchTask', 0, '{}') RETURNING id"
            )
            await conn.execute(
                "UPDATE batch_tasks SET state = 'Failed', response = 'ended during the outage', "
                "finished_at = now() WHERE id = $1",
                ended,
            )
            await wait_for(
                lambda: conn.fetchrow("SELECT * FROM task_events WHERE task_id = $1", ended),
                lambda r: r is not None and r["attempts"] >= 2 and r["published_at"] is None,
                timeout=60,
                what="relay passes to fail while the broker is down",
            )
            await asyncio.to_thread(rabbit.start_app)
            assert (await the_rig.finished(during, timeout=180))["state"] == "Succeeded"
            after = await the_rig.submit()
            assert (await the_rig.finished(after))["state"] == "Succeeded"
            await wait_for(
                lambda: event_rows(conn),
                lambda rows: len(rows) == 4 and all(r["published_at"] for r in rows),
                timeout=60,
                what="every event published",
            )
        finally:
            await conn.close()
        await wait_for(queue.drain, lambda r: len(r) >= 4, what="4 events received")
        assert queue.by_task() == {before: 1, during: 1, ended: 1, after: 1}
        print(f"[fault broker-restart] events per task: {queue.by_task()}")
