"""``Idempotency-Key`` for ForceResyncBatchTask.

The same caller sending the same key with the same command gets the same ``X-Batch-Task-Id``
and nothing new starts, also when the retries race: the first request claims the key, the
others wait (up to a bound) for it to finish and then replay its task id. The same key with a
different command is refused with 422. Keys whose command could not be queued (503) are
released, so a retry runs. Keys are remembered for ``sessions.idempotency_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable

import asyncpg
import orjson

from engine.api.bodies import ResyncRequest
from engine.api.errors import ApiError
from engine.store import Connection
from engine.store import idempotency as store

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_POLL = 0.05


def validate_key(key: str) -> str:
    """Keys are 1-255 visible ASCII characters (a V4 UUID is a good choice)."""
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def fingerprint(resync: ResyncRequest) -> bytes:
    """The command's identity: the same arguments in any body format or id order match."""
    canonical = {
        "ErpConnectionId": resync.erp_connection_id,
        "InternalKeyIds": sorted(resync.internal_key_ids),
    }
    return hashlib.sha256(orjson.dumps(canonical)).digest()


async def run_once(
    pool: asyncpg.Pool,
    principal: str,
    key: str,
    request_hash: bytes,
    create: Callable[[Connection], Awaitable[int]],
    publish: Callable[[int], Awaitable[None]],
    *,
    wait_seconds: float,
    stale_seconds: float,
) -> int:
    """Create and publish a task at most once per (principal, key); return the task id.

    ``create(conn)`` inserts the task in the transaction that claims the key; ``publish(task_id)``
    raises :class:`ApiError` when the command could not be queued. After a takeover ``publish``
    is called again for the task the dead request had created (the command carries the same
    message id, so the engine runs it once).
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        task_id = await _claim(pool, principal, key, request_hash, create)
        if task_id is not None:
            return await _publish(pool, principal, key, publish, task_id)
        row = await store.get(pool, principal, key)
        if row is None:
            continue  # released between our claim and our read: claim again
        if not hmac.compare_digest(row.request_hash, request_hash):
            raise ApiError(
                422, f"{HEADER} was already used with a different request", "IdempotencyException"
            )
        if row.state == "done":
            if row.task_id is None:
                raise ApiError(422, f"The task of this {HEADER} no longer exists")
            return row.task_id
        taken = await store.take_over(pool, principal, key, request_hash, stale_seconds)
        if taken is not None:  # the first request's process died while queueing
            if taken.task_id is None:  # its task was deleted meanwhile: start over
                await store.release(pool, principal, key)
                continue
            return await _publish(pool, principal, key, publish, taken.task_id)
        if time.monotonic() > deadline:
            raise ApiError(
                409,
                f"A request with this {HEADER} is still being processed; retry shortly",
                "ConflictException",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(_POLL)


async def _claim(
    pool: asyncpg.Pool,
    principal: str,
    key: str,
    request_hash: bytes,
    create: Callable[[Connection], Awaitable[int]],
) -> int | None:
    """Claim the key and create its task in one transaction (one commit); None if taken.

    A concurrent claim of the same key waits on the unique index until this commits.
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await store.claim(conn, principal, key, request_hash):
            return None
        task_id = await create(conn)
        await store.set_task(conn, principal, key, task_id)
        return task_id


async def _publish(
    pool: asyncpg.Pool,
    principal: str,
    key: str,
    publish: Callable[[int], Awaitable[None]],
    task_id: int,
) -> int:
    try:
        await publish(task_id)
    except BaseException:
        await asyncio.shield(store.release(pool, principal, key))
        raise
    await store.complete(pool, principal, key)
    return task_id
