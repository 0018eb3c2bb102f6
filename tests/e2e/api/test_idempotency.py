"""Idempotency-Key: one task per (caller, key, command), also under concurrent retries."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import asyncpg

from engine.api import idempotency
from engine.api.bodies import ResyncRequest
from engine.store import tasks
from tests.support import services
from tests.support.api import TICKET, basic
from tests.support.service import RESYNC, Service
from tests.support.waiting import wait_for

AUTH = basic("tje0", "Tje0")


async def send(
    service: Service, key: str, body: object, auth: dict[str, str] = AUTH
) -> tuple[int, str | None]:
    response = await service.client.post(
        RESYNC, json=body, headers={**auth, "Idempotency-Key": key}
    )
    return response.status, response.headers.get("X-Batch-Task-Id")


async def test_same_key_same_body_sequentially_and_concurrently(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str
) -> None:
    body = {"ErpConnectionId": 1, "InternalKeyIds": [4, 2, 9]}
    key = str(uuid.uuid4())
    sequential = [await send(front_door, key, body) for _ in range(50)]
    # Retries in another body format and id order are the same command.
    reordered = await front_door.client.post(
        RESYNC,
        data=b"ErpConnectionId=1&InternalKeyIds=9,2,4,4",
        headers={
            **AUTH,
            "Idempotency-Key": key,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    concurrent_key = str(uuid.uuid4())
    concurrent = await asyncio.gather(*(send(front_door, concurrent_key, body) for _ in range(50)))

    assert {status for status, _ in sequential} == {204}
    assert len({task for _, task in sequential}) == 1
    assert reordered.status == 204
    assert reordered.headers["X-Batch-Task-Id"] == sequential[0][1]
    assert {status for status, _ in concurrent} == {204}
    assert len({task for _, task in concurrent}) == 1
    assert concurrent[0][1] != sequential[0][1]
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 2
    commands = await wait_for(
        lambda: services.ready_messages(f"{broker_prefix}.commands"),
        lambda n: n == 2,
        what="two queued commands",
    )
    assert commands == 2


async def test_same_key_different_body_is_422_and_keys_are_per_caller(
    front_door: Service, db: asyncpg.Connection
) -> None:
    key = "order-4711"
    first = await send(front_door, key, {"InternalKeyIds": [1]})
    different = await front_door.client.post(
        RESYNC, json={"InternalKeyIds": [2]}, headers={**AUTH, "Idempotency-Key": key}
    )
    other_caller = await send(
        front_door, key, {"InternalKeyIds": [2]}, {"Authorization": f"SOTicket {TICKET}"}
    )
    assert first[0] == 204
    assert different.status == 422
    assert (await different.json())["ErrorType"] == "IdempotencyException"
    assert other_caller[0] == 204 and other_caller[1] != first[1]
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 2


async def test_malformed_keys_are_400(front_door: Service, db: asyncpg.Connection) -> None:
    for key in ("", "x" * 256, "bad\u00e9key"):
        response = await front_door.client.post(
            RESYNC, json={}, headers={**AUTH, "Idempotency-Key": key.encode().decode("latin-1")}
        )
        assert response.status == 400, key
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0


async def test_a_key_whose_command_was_not_queued_can_be_retried(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str
) -> None:
    """503 releases the key: the client's retry with the same key queues a new task."""
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{broker_prefix}.commands")
        await queue.unbind(broker_prefix, "resync")
        refused = await send(front_door, "retry-me", {"InternalKeyIds": [1]})
        await queue.bind(broker_prefix, "resync")
    retried = await send(front_door, "retry-me", {"InternalKeyIds": [1]})
    again = await send(front_door, "retry-me", {"InternalKeyIds": [1]})
    assert refused[0] == 503
    assert retried[0] == 204 and retried[1] != refused[1]
    assert again == retried
    states = [r["state"] for r in await db.fetch("SELECT state FROM batch_tasks ORDER BY id")]
    assert states == ["Failed", "New"]


async def test_a_key_left_pending_by_a_dead_process_is_taken_over(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str
) -> None:
    """A process died after creating the task but before publishing: the retry republishes it."""
    resync = ResyncRequest(erp_connection_id=0, internal_key_ids=(5, 6))
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    task_id = await tasks.create(
        db,
        source_connection_id=0,
        request={"ErpConnectionId": 0, "InternalKeyIds": [5, 6]},
        message_id="original-message-id",
    )
    await db.execute(
        """INSERT INTO idempotency_keys (principal, key, request_hash, task_id, locked_at)
           VALUES ('tje0', 'crashed', $1, $2, now() - interval '1 hour')""",
        idempotency.fingerprint(resync),
        task_id,
    )
    status, replayed = await send(front_door, "crashed", {"InternalKeyIds": [6, 5]})
    again = await send(front_door, "crashed", {"InternalKeyIds": [5, 6]})
    assert (status, replayed) == (204, str(task_id))
    assert again == (204, str(task_id))
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 1
    assert await db.fetchval("SELECT state FROM idempotency_keys") == "done"
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{broker_prefix}.commands", passive=True)
        message = await queue.get(timeout=5)
        assert message is not None
        assert message.message_id == "original-message-id"
        assert json.loads(message.body)["TaskId"] == task_id
        await message.ack()
