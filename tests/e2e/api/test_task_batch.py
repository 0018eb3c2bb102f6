"""The front door with batched task inserts: concurrent requests, failures, the published ids."""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg
import orjson
import pytest

from engine.api.appkeys import TASK_BATCHER
from engine.store.task_batch import TaskBatcher
from tests.support import services
from tests.support.api import basic
from tests.support.service import RESYNC, Service

AUTH = basic("tje0", "Tje0")


async def post(service: Service, n: int) -> tuple[int, str | None, bytes]:
    response = await service.client.post(
        RESYNC, json={"ErpConnectionId": 1, "InternalKeyIds": [n + 1, n + 2]}, headers=AUTH
    )
    return response.status, response.headers.get("X-Batch-Task-Id"), await response.read()


async def published(prefix: str) -> dict[str, dict[str, object]]:
    """message id -> body of every command in the commands queue (consumed)."""
    found: dict[str, dict[str, object]] = {}
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{prefix}.commands", ensure=False)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            assert message.message_id is not None
            found[message.message_id] = orjson.loads(message.body)
    return found


async def test_concurrent_requests_get_distinct_tasks_and_publish_their_own_ids(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str
) -> None:
    batcher = front_door.app[TASK_BATCHER]
    answers = await asyncio.gather(*(post(front_door, n) for n in range(60)))
    assert [status for status, _, _ in answers] == [204] * 60
    ids = [int(task_id or 0) for _, task_id, _ in answers]
    assert len(set(ids)) == 60
    assert batcher.rows == 60
    rows = {
        r["id"]: r
        for r in await db.fetch("SELECT id, message_id, request::text, state FROM batch_tasks")
    }
    assert set(rows) == set(ids)
    # Each command names its own task, carries that task's message id and the request's keys.
    commands = await published(broker_prefix)
    assert len(commands) == 60
    for n, task_id in enumerate(ids):
        row = rows[task_id]
        assert row["state"] == "New"
        body = commands[row["message_id"]]
        assert body["TaskId"] == task_id
        assert body["InternalKeyIds"] == [n + 1, n + 2]
        assert orjson.loads(row["request"])["InternalKeyIds"] == [n + 1, n + 2]


async def test_a_failing_batch_insert_answers_every_waiter_with_the_error_json(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lost(self: TaskBatcher, batch: object) -> dict[str, int]:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    monkeypatch.setattr(TaskBatcher, "_insert", lost)
    answers = await asyncio.gather(*(post(front_door, n) for n in range(20)))
    for status, task_id, body in answers:
        assert status == 503 and task_id is None
        error = orjson.loads(body)
        assert error["Error"] is True
        assert error["ErrorType"] == "ServiceUnavailableException"
        assert error["ErrorSource"] == "erpsync"
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0
    assert await published(broker_prefix) == {}
    monkeypatch.undo()
    status, task_id, _ = await post(front_door, 1)  # the next batch works again
    assert status == 204 and task_id is not None


async def test_the_unbatched_path_still_works(front_door: Service, db: asyncpg.Connection) -> None:
    front_door.app[TASK_BATCHER]._closed = True  # as during shutdown
    status, _, body = await post(front_door, 1)
    assert status == 503
    assert orjson.loads(body)["ErrorType"] == "ServiceUnavailableException"
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0
