"""Retention of the task.finished outbox and its webhook deliveries, and resending a delivery,
in SQL: only settled rows past their retention go, in bounded batches."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from engine.store import events

DAY = 24 * 3600.0
WEEK = 7 * DAY
MONTH = 30 * DAY


async def event(pool: asyncpg.Pool, task_id: int, *, sent_days_ago: int | None) -> None:
    """A prepared event of ``task_id``: sent that many days ago, or not yet (None)."""
    await pool.execute(
        "INSERT INTO task_events (task_id, created_at, body, prepared_at, published_at) "
        "VALUES ($1, now() - interval '60 days', $2, now() - interval '60 days', "
        "now() - make_interval(days => $3::int))",
        task_id,
        {"TaskId": task_id},
        sent_days_ago,
    )


async def delivery(
    pool: asyncpg.Pool, task_id: int, webhook: str, state: str, days_ago: int
) -> int:
    """A delivery created ``days_ago``: delivered or given up then, or still ``pending``."""
    return int(
        await pool.fetchval(
            """
            INSERT INTO webhook_deliveries
                (task_id, webhook, attempts, created_at, next_attempt_at, delivered_at, gave_up_at)
            VALUES ($1, $2, 3, now() - make_interval(days => $4), now() - make_interval(days => $4),
                    CASE WHEN $3 = 'delivered' THEN now() - make_interval(days => $4) END,
                    CASE WHEN $3 = 'given_up' THEN now() - make_interval(days => $4) END)
            RETURNING id
            """,
            task_id,
            webhook,
            state,
            days_ago,
        )
    )


async def event_ids(pool: asyncpg.Pool) -> list[int]:
    return [r[0] for r in await pool.fetch("SELECT task_id FROM task_events ORDER BY task_id")]


async def delivery_ids(pool: asyncpg.Pool) -> list[int]:
    return [r[0] for r in await pool.fetch("SELECT id FROM webhook_deliveries ORDER BY id")]


async def test_only_sent_events_past_retention_without_undelivered_deliveries_go(
    pool: asyncpg.Pool,
) -> None:
    await event(pool, 1, sent_days_ago=8)  # goes
    await event(pool, 2, sent_days_ago=6)  # recent
    await event(pool, 3, sent_days_ago=None)  # never sent, however old
    await event(pool, 4, sent_days_ago=8)
    await delivery(pool, 4, "ops", "pending", 8)  # still retrying: needs the body
    await event(pool, 5, sent_days_ago=8)
    await delivery(pool, 5, "ops", "given_up", 8)  # may be resent: needs the body
    await event(pool, 6, sent_days_ago=8)
    await delivery(pool, 6, "ops", "delivered", 8)  # goes: delivered needs nothing
    assert await events.purge_sent_events(pool, WEEK) == 2
    assert await event_ids(pool) == [2, 3, 4, 5]
    assert await events.purge_sent_events(pool, WEEK) == 0
    assert len(await delivery_ids(pool)) == 3  # the event purge deletes no delivery


async def test_only_delivered_or_given_up_deliveries_past_retention_go(
    pool: asyncpg.Pool,
) -> None:
    await event(pool, 1, sent_days_ago=40)
    old_delivered = await delivery(pool, 1, "a", "delivered", 31)
    old_given_up = await delivery(pool, 1, "b", "given_up", 31)
    recent_delivered = await delivery(pool, 1, "c", "delivered", 29)
    recent_given_up = await delivery(pool, 1, "d", "given_up", 29)
    retrying = await delivery(pool, 1, "e", "pending", 31)  # created, due and tried long ago
    assert await events.purge_finished_deliveries(pool, MONTH) == 2
    left = await delivery_ids(pool)
    assert old_delivered not in left and old_given_up not in left
    assert left == [recent_delivered, recent_given_up, retrying]
    # The event stays while its given-up and pending deliveries do.
    assert await events.purge_sent_events(pool, WEEK) == 0
    await pool.execute("DELETE FROM webhook_deliveries WHERE id = ANY($1::bigint[])", left[1:])
    assert await events.purge_sent_events(pool, WEEK) == 1


@pytest.mark.parametrize("purge", ["events", "deliveries"])
async def test_a_backlog_goes_in_bounded_batches_past_rows_that_stay(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, purge: str
) -> None:
    for task_id in range(1, 16):  # every third row stays
        await event(pool, task_id, sent_days_ago=None if task_id % 3 == 0 else 40)
        await delivery(pool, task_id, "ops", "pending" if task_id % 3 == 0 else "delivered", 40)
    deleted: list[int] = []
    fetchrow = asyncpg.Pool.fetchrow

    async def counting(self: asyncpg.Pool, query: str, *args: Any, **kw: Any) -> Any:
        row = await fetchrow(self, query, *args, **kw)
        deleted.append(row[0])
        return row

    monkeypatch.setattr(asyncpg.Pool, "fetchrow", counting)
    if purge == "events":
        assert await events.purge_sent_events(pool, WEEK, batch=4) == 10
        assert [r % 3 for r in await event_ids(pool)] == [0] * 5
    else:
        assert await events.purge_finished_deliveries(pool, MONTH, batch=4) == 10
        assert len(await delivery_ids(pool)) == 5
    assert deleted == [4, 4, 2]  # one statement per batch, none beyond ``batch`` rows


async def test_a_row_held_by_another_transaction_is_skipped_not_waited_for(
    pool: asyncpg.Pool,
) -> None:
    await event(pool, 1, sent_days_ago=8)
    await event(pool, 2, sent_days_ago=8)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM task_events WHERE task_id = 1 FOR UPDATE")
        assert await events.purge_sent_events(pool, WEEK) == 1
    assert await event_ids(pool) == [1]
    assert await events.purge_sent_events(pool, WEEK) == 1


async def test_only_a_given_up_delivery_is_resent_with_a_fresh_count_of_attempts(
    pool: asyncpg.Pool,
) -> None:
    await event(pool, 1, sent_days_ago=40)
    given_up = await delivery(pool, 1, "a", "given_up", 31)
    delivered = await delivery(pool, 1, "b", "delivered", 31)
    pending = await delivery(pool, 1, "c", "pending", 31)
    resent = await events.resend_delivery(pool, given_up)
    assert resent is not None
    assert resent["gave_up_at"] is None and resent["attempts"] == 0
    assert await pool.fetchval(
        "SELECT $1::timestamptz >= now() - interval '1 minute'", resent["next_attempt_at"]
    )
    assert await events.resend_delivery(pool, given_up) is None  # pending now
    assert await events.resend_delivery(pool, delivered) is None
    assert await events.resend_delivery(pool, pending) is None
    assert await events.resend_delivery(pool, 424242) is None
    async with pool.acquire() as conn:
        due = await events.claim_due_deliveries(conn, ["a", "b", "c"], 60, 10)
    assert sorted(d.id for d in due) == [given_up, pending]  # the loop takes it again
    # A resent delivery is pending: no purge takes it, however old it is.
    assert await events.purge_finished_deliveries(pool, MONTH) == 1  # the delivered one


async def test_deliveries_of_a_removed_webhook_are_given_up_once_nobody_took_them(
    pool: asyncpg.Pool,
) -> None:
    for task_id in (1, 2, 3):
        await event(pool, task_id, sent_days_ago=40)
    orphan = await delivery(pool, 1, "removed", "pending", 2)  # due two days ago, never taken
    fresh = await delivery(pool, 2, "removed", "pending", 0)  # fell due just now
    kept = await delivery(pool, 1, "ops", "pending", 2)  # still configured: keeps retrying
    done = await delivery(pool, 3, "removed", "delivered", 2)
    await pool.execute("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1", fresh)
    assert await events.give_up_unconfigured(pool, ["ops"], 3600) == {"removed": 1}
    rows = {
        r["id"]: r
        for r in await pool.fetch("SELECT id, gave_up_at, last_error FROM webhook_deliveries")
    }
    assert rows[orphan]["gave_up_at"] is not None
    assert rows[orphan]["last_error"] == "webhook removed is no longer configured"
    assert rows[fresh]["gave_up_at"] is None and rows[kept]["gave_up_at"] is None
    assert rows[done]["gave_up_at"] is None
    assert await events.give_up_unconfigured(pool, ["ops"], 3600) == {}
    # A worker still configured with it (a rolling upgrade) claims it, so it is not given up.
    async with pool.acquire() as conn:
        assert [d.id for d in await events.claim_due_deliveries(conn, ["removed"], 60, 10)] == [
            fresh
        ]
    assert await events.give_up_unconfigured(pool, ["ops"], 0) == {}
    # Given up, it is purged after the retention like any other, and frees its event.
    await pool.execute(
        "UPDATE webhook_deliveries SET gave_up_at = now() - interval '31 days' WHERE id = $1",
        orphan,
    )
    assert await events.purge_finished_deliveries(pool, MONTH) == 1
    assert orphan not in await delivery_ids(pool)
