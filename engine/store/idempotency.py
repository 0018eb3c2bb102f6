"""Idempotency keys for ForceResyncBatchTask (Stripe's design, scoped per caller).

A key is claimed with state ``pending`` before the task is created and becomes ``done`` once the
broker confirmed the command. A claim whose owner died (``pending`` for longer than the takeover
age) may be taken over; the new owner republishes the stored task's command.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.store import Executor


@dataclass(frozen=True, slots=True)
class KeyRow:
    """The stored state of one key."""

    request_hash: bytes
    state: str
    task_id: int | None


async def claim(conn: Executor, principal: str, key: str, request_hash: bytes) -> bool:
    """Insert the key as ``pending``; True when this caller now owns it."""
    inserted = await conn.fetchval(
        """
        INSERT INTO idempotency_keys (principal, key, request_hash) VALUES ($1, $2, $3)
        ON CONFLICT (principal, key) DO NOTHING RETURNING 1
        """,
        principal,
        key,
        request_hash,
    )
    return inserted is not None


async def get(conn: Executor, principal: str, key: str) -> KeyRow | None:
    """The key's current state."""
    row = await conn.fetchrow(
        """
        SELECT request_hash, state, task_id FROM idempotency_keys
        WHERE principal = $1 AND key = $2
        """,
        principal,
        key,
    )
    return None if row is None else KeyRow(bytes(row["request_hash"]), row["state"], row["task_id"])


async def take_over(
    conn: Executor, principal: str, key: str, request_hash: bytes, stale_seconds: float
) -> KeyRow | None:
    """Take a ``pending`` claim untouched for ``stale_seconds`` (its owner died); None if not."""
    row = await conn.fetchrow(
        """
        UPDATE idempotency_keys SET locked_at = now()
        WHERE principal = $1 AND key = $2 AND request_hash = $3 AND state = 'pending'
          AND locked_at < now() - make_interval(secs => $4)
        RETURNING request_hash, state, task_id
        """,
        principal,
        key,
        request_hash,
        stale_seconds,
    )
    return None if row is None else KeyRow(bytes(row["request_hash"]), row["state"], row["task_id"])


async def set_task(conn: Executor, principal: str, key: str, task_id: int) -> None:
    """Remember the task created for a pending key (before its command is published)."""
    await conn.execute(
        "UPDATE idempotency_keys SET task_id = $3 WHERE principal = $1 AND key = $2",
        principal,
        key,
        task_id,
    )


async def complete(conn: Executor, principal: str, key: str) -> None:
    """The command is confirmed: later requests with this key replay the task id."""
    await conn.execute(
        "UPDATE idempotency_keys SET state = 'done' WHERE principal = $1 AND key = $2",
        principal,
        key,
    )


async def release(conn: Executor, principal: str, key: str) -> None:
    """Forget a pending key whose command could not be queued, so a retry can run."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND state = 'pending'",
        principal,
        key,
    )


async def purge_older_than(conn: Executor, seconds: float) -> int:
    """Delete keys older than ``seconds``; returns how many."""
    result = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        seconds,
    )
    return int(result.split()[-1])
