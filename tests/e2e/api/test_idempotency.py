"""Idempotency-Key: one task per (caller, key, command), also under concurrent retries."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
import asyncpg
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from engine.api import followups, idempotency
from engine.api.bodies import ResyncRequest
from engine.store import tasks
from tests.support import services
from tests.support.api import TICKET, api_settings, basic
from tests.support.service import RESYNC, Service
from tests.support.waiting import wait_for

AUTH = basic("tje0", "Tje0")
RETRY_FAILED = followups.RETRY_FAILED


async def send(
    service: Service, key: str, body: object, auth: dict[str, str] = AUTH
) -> tuple[int, str | None]:
    response = await service.client.post(
        RESYNC, json=body, headers={**auth, "Idempotency-Key": key}
    )
    return response.status, response.headers.get("X-Batch-Task-Id")


async def queued_command(broker_prefix: str) -> tuple[str | None, dict[str, Any]]:
    """The next command in the commands queue (taken off it): its message id and body."""
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{broker_prefix}.commands", passive=True)
        message = await queue.get(timeout=5)
        assert message is not None
        await message.ack()
        return message.message_id, json.loads(message.body)


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
    message_id, command = await queued_command(broker_prefix)
    assert message_id == "original-message-id"
    assert command["TaskId"] == task_id


# RetryFailed: the same Idempotency-Key semantics (engine.api.intake.TaskIntake.claim).


async def failed_task(db: asyncpg.Connection, correlation_id: str = "corr-1") -> int:
    """A finished task whose keys 1 and 2 failed on connection 2, and key 7 on the source."""
    task_id: int = await db.fetchval(
        """INSERT INTO batch_tasks (name, source_connection_id, request, state, finished_at,
                                    correlation_id)
           VALUES ('ForceResyncBatchTask', 0, '{"InternalKeyIds": [1, 2, 3, 7]}', 'Failed', now(),
                   $1)
           RETURNING id""",
        correlation_id,
    )
    await db.executemany(
        "INSERT INTO record_outcomes (task_id, internal_key_id, connection_id, status) "
        "VALUES ($1, $2, $3, $4)",
        [
            (task_id, 1, 2, "failed"),
            (task_id, 2, 2, "failed"),
            (task_id, 2, 1, "updated"),
            (task_id, 3, 2, "updated"),
            (task_id, 7, 0, "failed"),
        ],
    )
    return task_id


async def retry(
    service: Service, key: str | None, task_id: int, auth: dict[str, str] = AUTH
) -> tuple[int, str | None, Any]:
    """POST RetryFailed {Id}: status, X-Batch-Task-Id and the body."""
    headers = {**auth} if key is None else {**auth, "Idempotency-Key": key}
    response = await service.client.post(RETRY_FAILED, json={"Id": task_id}, headers=headers)
    return response.status, response.headers.get("X-Batch-Task-Id"), await response.json()


async def retries(db: asyncpg.Connection, of: int) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT * FROM batch_tasks WHERE (request->>'RetryOf')::bigint = $1 ORDER BY id", of
        )
    )


async def test_retry_failed_with_the_same_key_replays_its_task_also_concurrently(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str
) -> None:
    first_task = await failed_task(db)
    key = str(uuid.uuid4())
    sequential = [await retry(front_door, key, first_task) for _ in range(10)]
    concurrent_key = str(uuid.uuid4())
    concurrent = await asyncio.gather(
        *(retry(front_door, concurrent_key, first_task) for _ in range(20))
    )

    assert {status for status, _, _ in sequential} == {200}, sequential
    assert len({(task, body) for _, task, body in sequential}) == 1
    assert sequential[0][2] == int(str(sequential[0][1]))
    assert {status for status, _, _ in concurrent} == {200}, concurrent
    assert len({task for _, task, _ in concurrent}) == 1
    assert concurrent[0][1] != sequential[0][1]
    created = await retries(db, first_task)
    assert [str(r["id"]) for r in created] == [sequential[0][1], concurrent[0][1]]
    assert all(r["correlation_id"] == "corr-1" for r in created)
    commands = await wait_for(
        lambda: services.ready_messages(f"{broker_prefix}.commands"),
        lambda n: n == 2,
        what="two queued retries",
    )
    assert commands == 2
    # Without a key each call is a new task, as before.
    assert (await retry(front_door, None, first_task))[0] == 200
    assert len(await retries(db, first_task)) == 3


async def test_retry_failed_with_a_key_used_for_another_request_is_422(
    front_door: Service, db: asyncpg.Connection
) -> None:
    one, other = await failed_task(db), await failed_task(db)
    assert (await retry(front_door, "retry-key", one))[0] == 200
    status, _, body = await retry(front_door, "retry-key", other)  # another task
    assert status == 422 and body["ErrorType"] == "IdempotencyException", body
    resync = await front_door.client.post(  # the same key on ForceResyncBatchTask
        RESYNC, json={"InternalKeyIds": [1]}, headers={**AUTH, "Idempotency-Key": "retry-key"}
    )
    assert resync.status == 422
    # and the other way round: a ForceResyncBatchTask's key is not RetryFailed's
    assert (await send(front_door, "resync-key", {"ErpConnectionId": 0}))[0] == 204
    status, _, body = await retry(front_door, "resync-key", one)
    assert status == 422 and body["ErrorType"] == "IdempotencyException", body
    # keys are per caller: another user's same key is its own
    assert (await retry(front_door, "retry-key", other, {"Authorization": f"SOTicket {TICKET}"}))[
        0
    ] == 200
    assert len(await retries(db, one)) == 1 and len(await retries(db, other)) == 1
    assert (await retry(front_door, "bad\u00e9key".encode().decode("latin-1"), one))[0] == 400


async def test_retry_failed_whose_command_was_not_queued_can_be_retried_with_its_key(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str
) -> None:
    first_task = await failed_task(db)
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{broker_prefix}.commands")
        await queue.unbind(broker_prefix, "resync")
        refused = await retry(front_door, "retry-me", first_task)
        await queue.bind(broker_prefix, "resync")
    retried = await retry(front_door, "retry-me", first_task)
    again = await retry(front_door, "retry-me", first_task)
    assert refused[0] == 503
    assert retried[0] == 200 and retried[1] != refused[1]
    assert again == retried
    assert [r["state"] for r in await retries(db, first_task)] == ["Failed", "New"]


async def test_retry_failed_key_still_being_processed_is_409_with_retry_after(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    """The first request holds the key (pending, not stale): a retry waits
    ``publish_timeout + 2`` seconds for it, then answers 409."""
    settings = api_settings(database, broker_prefix, stores, rsa_key)
    settings = settings.model_copy(
        update={"broker": settings.broker.model_copy(update={"publish_timeout": 0.2})}
    )
    first_task = await failed_task(db)
    fingerprint = followups.RetryRequest(
        followups.RetryCommand(0, followups.RetryPlan((1,), None), None, first_task)
    ).fingerprint()
    await db.execute(
        "INSERT INTO idempotency_keys (principal, key, request_hash) VALUES ('tje0', 'busy', $1)",
        fingerprint,
    )
    async with Service(settings, engine=False) as service:
        response = await service.client.post(
            RETRY_FAILED, json={"Id": first_task}, headers={**AUTH, "Idempotency-Key": "busy"}
        )
        assert response.status == 409, await response.text()
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["ErrorType"] == "ConflictException"
    assert await retries(db, first_task) == []


async def test_a_retry_failed_key_left_pending_by_a_dead_process_is_taken_over(
    front_door: Service, db: asyncpg.Connection, broker_prefix: str
) -> None:
    """The process died after creating the retry task but before publishing it: the retry with
    the key publishes the stored task's command (its message id, TargetKeys, CorrelationId)."""
    first_task = await failed_task(db)
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    plan = followups.RetryPlan((1, 2, 7), {2: (1, 2)})
    request = followups.RetryRequest(followups.RetryCommand(0, plan, "corr-1", first_task))
    stored = await request.insert(db, "original-retry-id")
    await db.execute(
        """INSERT INTO idempotency_keys (principal, key, request_hash, task_id, locked_at)
           VALUES ('tje0', 'crashed', $1, $2, now() - interval '1 hour')""",
        request.fingerprint(),
        stored,
    )
    status, replayed, body = await retry(front_door, "crashed", first_task)
    again = await retry(front_door, "crashed", first_task)
    assert (status, replayed, body) == (200, str(stored), stored)
    assert again == (200, str(stored), stored)
    assert [r["id"] for r in await retries(db, first_task)] == [stored]
    message_id, command = await queued_command(broker_prefix)
    assert message_id == "original-retry-id"
    assert command["TaskId"] == stored and command["CorrelationId"] == "corr-1"
    assert command["InternalKeyIds"] == [1, 2, 7]
    assert command["TargetKeys"] == {"2": [1, 2]}
