"""Read-only queries for operators: the dashboard, the CLI and the scrape-time metrics."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import asyncpg

from engine.store import Executor


async def task_counts_by_state(conn: Executor) -> dict[str, int]:
    """How many batch tasks are in each state."""
    rows = await conn.fetch("SELECT state, count(*) AS n FROM batch_tasks GROUP BY state")
    return {r["state"]: r["n"] for r in rows}


async def tasks(
    conn: Executor,
    states: Sequence[str] | None,
    limit: int,
    before_id: int | None = None,
    *,
    correlation_id: str | None = None,
    message_id: str | None = None,
    sources: Collection[int] | None = None,
) -> list[asyncpg.Record]:
    """Tasks newest first, optionally in some states, optionally older than ``before_id``,
    optionally only those of a command's ``CorrelationId`` or message id, optionally only those
    whose source is one of ``sources``."""
    return list(
        await conn.fetch(
            """
            SELECT * FROM batch_tasks
            WHERE ($1::text[] IS NULL OR state = ANY($1))
              AND ($2::bigint IS NULL OR id < $2)
              AND ($4::text IS NULL OR correlation_id = $4)
              AND ($5::text IS NULL OR message_id = $5)
              AND ($6::integer[] IS NULL OR source_connection_id = ANY($6))
            ORDER BY id DESC LIMIT $3
            """,
            list(states) if states else None,
            before_id,
            limit,
            correlation_id,
            message_id,
            sorted(sources) if sources is not None else None,
        )
    )


async def outcomes_by_target(conn: Executor, task_id: int) -> list[asyncpg.Record]:
    """Outcome counts of a task per connection (NULL for unknown keys) and status."""
    return list(
        await conn.fetch(
            """
            SELECT connection_id, status, count(*) AS n, sum(changed_fields) AS fields
            FROM record_outcomes WHERE task_id = $1
            GROUP BY connection_id, status ORDER BY connection_id NULLS FIRST, status
            """,
            task_id,
        )
    )


async def failures(
    conn: Executor,
    task_id: int,
    limit: int,
    connection_id: int | None = None,
    connections: Collection[int] | None = None,
) -> list[asyncpg.Record]:
    """A task's outcomes that carry a reason (failed, unknown key, not linked), oldest first;
    optionally only those on ``connection_id`` or on one of ``connections`` (an outcome of
    unknown keys, on no connection, is always kept)."""
    return list(
        await conn.fetch(
            """
            SELECT internal_key_id, connection_id, status, error, created_at
            FROM record_outcomes
            WHERE task_id = $1 AND error IS NOT NULL
              AND ($2::integer IS NULL OR connection_id = $2)
              AND ($4::integer[] IS NULL OR connection_id IS NULL OR connection_id = ANY($4))
            ORDER BY id LIMIT $3
            """,
            task_id,
            connection_id,
            limit,
            sorted(connections) if connections is not None else None,
        )
    )


async def sync_log(
    conn: Executor,
    *,
    task_id: int | None,
    internal_key_id: int | None,
    connection_id: int | None,
    limit: int,
    before_id: int | None = None,
    connections: Collection[int] | None = None,
) -> list[asyncpg.Record]:
    """Field changes, newest first, filtered by task, internal key and connection, optionally
    only those on one of ``connections``."""
    return list(
        await conn.fetch(
            """
            SELECT id, task_id, connection_id, internal_key_id, erp_actor_type, erp_field,
                   crm_field, direction, old_value, new_value, created_at
            FROM sync_log
            WHERE ($1::bigint IS NULL OR task_id = $1)
              AND ($2::bigint IS NULL OR internal_key_id = $2)
              AND ($3::integer IS NULL OR connection_id = $3)
              AND ($4::bigint IS NULL OR id < $4)
              AND ($6::integer[] IS NULL OR connection_id = ANY($6))
            ORDER BY id DESC LIMIT $5
            """,
            task_id,
            internal_key_id,
            connection_id,
            before_id,
            limit,
            sorted(connections) if connections is not None else None,
        )
    )


async def connection_activity(conn: Executor, window_seconds: int) -> list[asyncpg.Record]:
    """Per connection, outcomes in the last ``window_seconds``: totals, failures, last error.

    Only outcomes of tasks still running or finished within the window are read, through the
    ``(task_id, connection_id, status)`` index, so old history costs nothing.
    """
    return list(
        await conn.fetch(
            """
            WITH recent AS (
                SELECT id FROM batch_tasks
                WHERE finished_at IS NULL OR finished_at > now() - make_interval(secs => $1)
            )
            SELECT o.connection_id,
                   count(*) AS total,
                   count(*) FILTER (WHERE o.status = 'failed') AS failed,
                   max(o.created_at) AS last_activity,
                   max(o.created_at) FILTER (WHERE o.status = 'failed') AS last_failure_at,
                   (SELECT f.error FROM record_outcomes f
                    WHERE f.task_id IN (SELECT id FROM recent)
                      AND f.connection_id = o.connection_id AND f.status = 'failed'
                      AND f.created_at > now() - make_interval(secs => $1)
                    ORDER BY f.id DESC LIMIT 1) AS last_error
            FROM record_outcomes o
            WHERE o.task_id IN (SELECT id FROM recent)
              AND o.connection_id IS NOT NULL
              AND o.created_at > now() - make_interval(secs => $1)
            GROUP BY o.connection_id
            """,
            window_seconds,
        )
    )
