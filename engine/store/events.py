"""The task.finished outbox and its webhook deliveries.

A row of ``task_events`` is written by a trigger (migration 0010) in the very transaction that
makes a task final, so no code path that finishes a task can forget it and no crash after that
commit loses it. Relays in every worker claim rows with ``FOR UPDATE SKIP LOCKED``: a row is
published by one relay at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.store import Connection, Executor

PURGE_BATCH = 1000
"""Rows deleted per statement by the purges: a large backlog is never one long lock."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A prepared event not yet confirmed by the broker."""

    task_id: int
    body: dict[str, Any]
    attempts: int


async def claim_unprepared(conn: Connection, limit: int) -> list[asyncpg.Record]:
    """Lock events without a body (in the caller's transaction); returns their tasks' rows."""
    return list(
        await conn.fetch(
            """
            SELECT t.* FROM task_events e JOIN batch_tasks t ON t.id = e.task_id
            WHERE e.body IS NULL ORDER BY e.created_at LIMIT $1
            FOR UPDATE OF e SKIP LOCKED
            """,
            limit,
        )
    )


async def forget_orphans(conn: Connection) -> int:
    """Drop events whose task was deleted before they were prepared (nothing to tell)."""
    done = await conn.execute(
        """
        DELETE FROM task_events e WHERE e.body IS NULL
          AND NOT EXISTS (SELECT 1 FROM batch_tasks t WHERE t.id = e.task_id)
        """
    )
    return int(done.split()[-1])


async def prepare(
    conn: Connection, task_id: int, body: Mapping[str, Any], webhooks: Sequence[str]
) -> None:
    """Store an event's body (from now on the same on every publish) and its webhook deliveries."""
    await conn.execute(
        "UPDATE task_events SET body = $2, prepared_at = now() WHERE task_id = $1",
        task_id,
        dict(body),
    )
    if webhooks:
        await conn.executemany(
            """
            INSERT INTO webhook_deliveries (task_id, webhook) VALUES ($1, $2)
            ON CONFLICT (task_id, webhook) DO NOTHING
            """,
            [(task_id, name) for name in webhooks],
        )


async def claim_unpublished(conn: Connection, limit: int) -> list[PendingEvent]:
    """Lock prepared, unpublished events (in the caller's transaction), oldest first."""
    rows = await conn.fetch(
        """
        SELECT task_id, body, attempts FROM task_events
        WHERE published_at IS NULL AND body IS NOT NULL ORDER BY created_at LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [PendingEvent(r["task_id"], r["body"], r["attempts"]) for r in rows]


async def mark_published(conn: Connection, task_ids: Sequence[int]) -> None:
    """The broker confirmed these events."""
    await conn.execute(
        "UPDATE task_events SET published_at = now(), attempts = attempts + 1, last_error = NULL "
        "WHERE task_id = ANY($1::bigint[])",
        list(task_ids),
    )


async def note_failures(conn: Connection, failures: Mapping[int, str]) -> None:
    """Publishes the broker did not confirm; the next relay pass tries again."""
    await conn.executemany(
        "UPDATE task_events SET attempts = attempts + 1, last_error = $2 WHERE task_id = $1",
        [(task_id, error[:500]) for task_id, error in failures.items()],
    )


async def get_event(conn: Executor, task_id: int) -> asyncpg.Record | None:
    """A task's event row (None before the task finished)."""
    return await conn.fetchrow("SELECT * FROM task_events WHERE task_id = $1", task_id)


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """Events waiting for the broker and webhook deliveries not settled, for the metrics."""

    events_pending: int
    deliveries_pending: int
    deliveries_given_up: int


async def counts(conn: Executor) -> OutboxCounts:
    """What is waiting in the outbox (one round trip, on the partial indexes)."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM task_events WHERE published_at IS NULL),
               (SELECT count(*) FROM webhook_deliveries
                WHERE delivered_at IS NULL AND gave_up_at IS NULL),
               (SELECT count(*) FROM webhook_deliveries WHERE gave_up_at IS NOT NULL)
        """
    )
    assert row is not None
    return OutboxCounts(int(row[0]), int(row[1]), int(row[2]))


# -- webhook deliveries ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A webhook delivery claimed for one attempt."""

    id: int
    task_id: int
    webhook: str
    attempts: int
    body: dict[str, Any]


async def claim_due_deliveries(
    conn: Connection, webhooks: Sequence[str], lease: float, limit: int
) -> list[DueDelivery]:
    """Take due deliveries of these webhooks for ``lease`` seconds (one statement).

    The claim moves ``next_attempt_at`` past the lease: another worker takes the row again only
    if this one died before recording the answer (then the receiver may see it twice; the
    message id tells).
    """
    rows = await conn.fetch(
        """
        UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
        FROM (SELECT id FROM webhook_deliveries
              WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
                AND webhook = ANY($1::text[])
              ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) due,
             task_events e
        WHERE d.id = due.id AND e.task_id = d.task_id
        RETURNING d.id, d.task_id, d.webhook, d.attempts, e.body
        """,
        list(webhooks),
        lease,
        limit,
    )
    return [
        DueDelivery(r["id"], r["task_id"], r["webhook"], r["attempts"], r["body"]) for r in rows
    ]


async def delivery_answered(
    conn: Executor,
    delivery_id: int,
    *,
    status: int | None,
    error: str | None,
    delivered: bool,
    retry_in: float | None,
) -> None:
    """Record one attempt: delivered, to be retried in ``retry_in`` seconds, or given up (None)."""
    await conn.execute(
        """
        UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3,
            delivered_at = CASE WHEN $4 THEN now() END,
            gave_up_at = CASE WHEN NOT $4 AND $5::float8 IS NULL THEN now() END,
            next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                                   ELSE now() + make_interval(secs => $5) END
        WHERE id = $1
        """,
        delivery_id,
        status,
        None if error is None else error[:500],
        delivered,
        retry_in,
    )


async def list_deliveries(
    conn: Executor, task_id: int | None, limit: int, sources: Collection[int] | None = None
) -> list[asyncpg.Record]:
    """Webhook deliveries, newest first (of one task when given; of tasks from ``sources``
    unless None)."""
    return list(
        await conn.fetch(
            """
            SELECT d.id, d.task_id, d.webhook, d.attempts, d.last_status, d.last_error,
                   d.next_attempt_at, d.delivered_at, d.gave_up_at, d.created_at
            FROM webhook_deliveries d
            WHERE ($1::bigint IS NULL OR d.task_id = $1)
              AND ($3::int[] IS NULL OR EXISTS (
                  SELECT 1 FROM batch_tasks t
                  WHERE t.id = d.task_id AND t.source_connection_id = ANY($3)))
            ORDER BY d.id DESC LIMIT $2
            """,
            task_id,
            limit,
            sorted(sources) if sources is not None else None,
        )
    )


async def resend_delivery(conn: Executor, delivery_id: int) -> asyncpg.Record | None:
    """Make a given-up delivery due again with a fresh count of attempts (the delivery loop then
    tries it up to ``max_attempts`` times again); returns it as it is now, None when it is not
    given up (or unknown)."""
    return await conn.fetchrow(
        """
        UPDATE webhook_deliveries SET gave_up_at = NULL, attempts = 0, next_attempt_at = now()
        WHERE id = $1 AND gave_up_at IS NOT NULL
        RETURNING *
        """,
        delivery_id,
    )


async def get_delivery(conn: Executor, delivery_id: int) -> asyncpg.Record | None:
    """One webhook delivery (None when unknown)."""
    return await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id)


# -- retention -------------------------------------------------------------------------------


async def give_up_unconfigured(
    conn: Executor, configured: Collection[str], unclaimed_for: float
) -> dict[str, int]:
    """Give up the undelivered deliveries of webhooks no longer in ``configured`` that no worker
    has claimed for ``unclaimed_for`` seconds since they fell due; returns how many per webhook.

    A worker that still has the webhook (an older configuration during a rolling upgrade)
    claims its deliveries, which moves ``next_attempt_at`` on, so they are not given up while
    any worker sends them. A given-up delivery can be resent once the webhook is back, and is
    purged after ``deliveries_kept`` with its event, so a removed webhook no longer keeps rows
    for ever.
    """
    rows = await conn.fetch(
        """
        UPDATE webhook_deliveries SET gave_up_at = now(),
            last_error = 'webhook ' || webhook || ' is no longer configured'
        WHERE delivered_at IS NULL AND gave_up_at IS NULL AND webhook <> ALL($1::text[])
          AND next_attempt_at < now() - make_interval(secs => $2)
        RETURNING webhook
        """,
        sorted(configured),
        unclaimed_for,
    )
    given_up: dict[str, int] = {}
    for row in rows:
        given_up[row["webhook"]] = given_up.get(row["webhook"], 0) + 1
    return given_up


async def purge_sent_events(conn: Executor, older_than: float, batch: int = PURGE_BATCH) -> int:
    """Delete events the broker confirmed over ``older_than`` seconds ago; returns how many.

    An unpublished event is never deleted, nor one with a delivery not delivered (pending, or
    given up and so perhaps resent): that delivery needs its body. Each statement deletes at
    most ``batch`` rows, walking the table in key order; rows another transaction holds are
    skipped (the next housekeeping takes them). The deliveries are looked up per event (a
    scalar subquery, on their ``(task_id, webhook)`` index): as an anti-join the planner may
    scan the whole deliveries table once per batch.
    """
    return await _purge_in_batches(
        conn,
        """
        WITH doomed AS (
            SELECT e.task_id AS key FROM task_events e
            WHERE e.task_id > $1 AND e.published_at < now() - make_interval(secs => $2)
              AND coalesce((SELECT bool_and(d.delivered_at IS NOT NULL) FROM webhook_deliveries d
                            WHERE d.task_id = e.task_id), true)
            ORDER BY e.task_id LIMIT $3 FOR UPDATE OF e SKIP LOCKED),
        gone AS (DELETE FROM task_events e USING doomed WHERE e.task_id = doomed.key
                 RETURNING e.task_id AS key)
        SELECT count(*), max(key) FROM gone
        """,
        older_than,
        batch,
    )


async def purge_finished_deliveries(
    conn: Executor, older_than: float, batch: int = PURGE_BATCH
) -> int:
    """Delete webhook deliveries delivered or given up over ``older_than`` seconds ago; returns
    how many. A pending or retrying delivery is never deleted; batches as in
    :func:`purge_sent_events`."""
    return await _purge_in_batches(
        conn,
        """
        WITH doomed AS (
            SELECT id AS key FROM webhook_deliveries
            WHERE id > $1
              AND coalesce(delivered_at, gave_up_at) < now() - make_interval(secs => $2)
            ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED),
        gone AS (DELETE FROM webhook_deliveries d USING doomed WHERE d.id = doomed.key
                 RETURNING d.id AS key)
        SELECT count(*), max(key) FROM gone
        """,
        older_than,
        batch,
    )


async def _purge_in_batches(conn: Executor, sql: str, older_than: float, batch: int) -> int:
    """Run a purge statement (``$1`` the key to start after) until a batch comes back short.

    On the pool or a connection outside a transaction each statement commits on its own, so
    locks are held for one batch only.
    """
    total, after = 0, 0
    while True:
        row = await conn.fetchrow(sql, after, older_than, batch)
        assert row is not None
        deleted = int(row[0])
        total += deleted
        if deleted < batch:
            return total
        after = int(row[1])
