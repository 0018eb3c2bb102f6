"""Continuous sync state: engine status and interval, per-connection schedule and watermarks.

The schedule row of a connection is claimed with one conditional UPDATE (due, not held by a live
run, engine running), so across any number of processes exactly one claims each run; the next
run time moves forward on the interval's grid in the same statement.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.store import Connection, Executor

SYNC_TASK_NAME = "Sync"
"""The batch task name of incremental runs (and of ``SyncAll``)."""


@dataclass(frozen=True, slots=True)
class EngineState:
    status: str
    interval: float


@dataclass(frozen=True, slots=True)
class Watermark:
    """Where a connection's actor type was read up to: the connector's ``last_modified`` and the
    keys already handled at exactly that position (the tie-breaker); with an overlap, also the
    keys handled within it (key -> position), so that its re-read queues none of them again
    (None: not recorded, the connection had no overlap)."""

    since: str | None
    seen_keys: tuple[str, ...] = ()
    recent: Mapping[str, str] | None = None
    window: float = 0.0
    """Seconds before ``since`` that ``recent`` covers (the overlap it was recorded with)."""


@dataclass(frozen=True, slots=True)
class RunCounts:
    changed: int = 0
    queued: int = 0
    echoes: int = 0
    unlinked: int = 0
    late: int = 0
    """Changed actors the overlap found behind the watermark (committed late)."""


async def ensure(
    conn: Executor, connection_ids: Iterable[int], *, status: str, interval: float
) -> EngineState:
    """Create the engine row (first start only: status and interval persist) and a schedule row
    per connection; returns the engine state."""
    await conn.execute(
        """
        INSERT INTO sync_engine (status, interval_s) VALUES ($1, $2) ON CONFLICT DO NOTHING
        """,
        status,
        interval,
    )
    await conn.execute(
        """
        INSERT INTO sync_connections (connection_id)
        SELECT unnest($1::int[]) ON CONFLICT DO NOTHING
        """,
        list(connection_ids),
    )
    state = await get_engine(conn)
    assert state is not None
    return state


async def get_engine(conn: Executor) -> EngineState | None:
    row = await conn.fetchrow("SELECT status, interval_s FROM sync_engine")
    return None if row is None else EngineState(row["status"], float(row["interval_s"]))


async def set_status(conn: Executor, status: str, by: str) -> EngineState | None:
    """Start or stop the engine; starting makes every connection due at once."""
    row = await conn.fetchrow(
        """
        WITH e AS (
            UPDATE sync_engine SET status = $1, changed_at = now(), changed_by = $2
            RETURNING status, interval_s, (SELECT status FROM sync_engine) AS was
        ), due AS (
            UPDATE sync_connections SET next_run_at = now()
            WHERE (SELECT status = 'running' AND was = 'stopped' FROM e)
        )
        SELECT status, interval_s FROM e
        """,
        status,
        by,
    )
    return None if row is None else EngineState(row["status"], float(row["interval_s"]))


async def set_interval(conn: Executor, interval: float, by: str) -> EngineState | None:
    """Change the interval; runs due later than one new interval from now come forward."""
    row = await conn.fetchrow(
        """
        WITH e AS (
            UPDATE sync_engine SET interval_s = $1, changed_at = now(), changed_by = $2
            RETURNING status, interval_s
        ), due AS (
            UPDATE sync_connections
            SET next_run_at = now() + make_interval(secs => $1)
            WHERE next_run_at > now() + make_interval(secs => $1)
        )
        SELECT status, interval_s FROM e
        """,
        interval,
        by,
    )
    return None if row is None else EngineState(row["status"], float(row["interval_s"]))


async def claim_due(
    conn: Executor, connection_ids: Sequence[int], worker: str, lease: float
) -> list[int]:
    """Claim the runs that are due: one statement, so one claimant per run across processes.

    A run still held by a live claim is not claimed again; the next run time moves to the next
    point of the interval grid after now (missed points are skipped, not run late in a burst).
    While the engine is stopped only forced runs (:func:`make_due` ``forced``) are claimed.
    An inactive connection (ToggleErpConnectionActive) is not claimed: its schedule stays as
    it is, so a run that fell due meanwhile runs at once when it is active again.
    """
    rows = await conn.fetch(
        """
        UPDATE sync_connections s
        SET run_by = $2, run_until = now() + make_interval(secs => $3), run_started_at = now(),
            runs = s.runs + 1, forced_run = false,
            next_run_at = s.next_run_at + make_interval(secs => e.interval_s * (
                floor(extract(epoch FROM now() - s.next_run_at) / e.interval_s) + 1))
        FROM sync_engine e
        WHERE (e.status = 'running' OR s.forced_run) AND s.connection_id = ANY($1::int[])
          AND s.next_run_at <= now() AND (s.run_by IS NULL OR s.run_until < now())
          AND NOT EXISTS (SELECT 1 FROM connection_states c
                          WHERE c.connection_id = s.connection_id AND NOT c.active)
        RETURNING s.connection_id
        """,
        list(connection_ids),
        worker,
        lease,
    )
    return [r[0] for r in rows]


async def renew(conn: Executor, connection_id: int, worker: str, lease: float) -> bool:
    """Extend this worker's claim of the run; False when it lost it."""
    value = await conn.fetchval(
        """
        UPDATE sync_connections SET run_until = now() + make_interval(secs => $3)
        WHERE connection_id = $1 AND run_by = $2 RETURNING 1
        """,
        connection_id,
        worker,
        lease,
    )
    return value is not None


async def finish_run(
    conn: Executor,
    connection_id: int,
    worker: str,
    outcome: str,
    counts: RunCounts,
    error: str | None = None,
) -> None:
    await conn.execute(
        """
        UPDATE sync_connections
        SET run_by = NULL, run_until = NULL, last_run_at = now(), last_run_by = $2,
            last_outcome = $3,
            last_error = $4, last_changed = $5, last_queued = $6, last_echoes = $7,
            last_unlinked = $8,
            caught_up_at = CASE WHEN $3 = 'ok' THEN run_started_at ELSE caught_up_at END
        WHERE connection_id = $1 AND run_by = $2
        """,
        connection_id,
        worker,
        outcome,
        error,
        counts.changed,
        counts.queued,
        counts.echoes,
        counts.unlinked,
    )


async def request_full(conn: Executor, connection_ids: Sequence[int] | None) -> int:
    """The next run of these connections (all when None) reads from the start: now, once,
    even while the engine is stopped (``POST /api/v1/erpsync/engine/sync-from-start``).
    Inactive connections are left out; returns how many connections will run."""
    rows = await conn.fetch(
        """
        UPDATE sync_connections s
        SET full_sync_requested = true, forced_run = true, next_run_at = now()
        WHERE ($1::int[] IS NULL OR s.connection_id = ANY($1::int[])) AND NOT EXISTS (
            SELECT 1 FROM connection_states c
            WHERE c.connection_id = s.connection_id AND NOT c.active)
        RETURNING s.connection_id
        """,
        None if connection_ids is None else list(connection_ids),
    )
    return len(rows)


async def make_due(
    conn: Executor, connection_ids: Sequence[int] | None, *, forced: bool = False
) -> int:
    """SyncAll: run these connections (all when None) now; ``forced`` (ForceSyncAll): once,
    even while the engine is stopped. Inactive connections are left out ("sync all active
    connections"); returns how many connections will run."""
    rows = await conn.fetch(
        """
        UPDATE sync_connections s SET next_run_at = now(), forced_run = s.forced_run OR $2
        WHERE ($1::int[] IS NULL OR s.connection_id = ANY($1::int[])) AND NOT EXISTS (
            SELECT 1 FROM connection_states c
            WHERE c.connection_id = s.connection_id AND NOT c.active)
        RETURNING s.connection_id
        """,
        None if connection_ids is None else list(connection_ids),
        forced,
    )
    return len(rows)


async def take_full_request(conn: Connection, connection_id: int) -> bool:
    """Consume a request to sync from the start: forget the connection's watermarks."""
    async with conn.transaction():
        full = await conn.fetchval(
            """
            UPDATE sync_connections SET full_sync_requested = false
            WHERE connection_id = $1 AND full_sync_requested RETURNING 1
            """,
            connection_id,
        )
        if full:
            await conn.execute(
                "DELETE FROM sync_watermarks WHERE connection_id = $1", connection_id
            )
    return bool(full)


async def watermark(conn: Executor, connection_id: int, actor_type: str) -> Watermark | None:
    """The stored watermark; None when this actor type was never read."""
    row = await conn.fetchrow(
        """
        SELECT since, seen_keys, recent, recent_window FROM sync_watermarks
        WHERE connection_id = $1 AND actor_type = $2
        """,
        connection_id,
        actor_type,
    )
    if row is None:
        return None
    recent = json.loads(row[2]) if isinstance(row[2], str) else row[2]
    return Watermark(row[0], tuple(row[1]), None if recent is None else dict(recent), row[3])


async def move_watermark(
    conn: Executor, connection_id: int, actor_type: str, mark: Watermark, worker: str
) -> bool:
    """Store the watermark if this worker still holds the run (False: it lost the claim)."""
    value = await conn.fetchval(
        """
        INSERT INTO sync_watermarks
            (connection_id, actor_type, since, seen_keys, recent, recent_window)
        SELECT $1, $2, $3, $4, $6::text::jsonb, $7 WHERE EXISTS (
            SELECT 1 FROM sync_connections WHERE connection_id = $1 AND run_by = $5)
        ON CONFLICT (connection_id, actor_type) DO UPDATE
        SET since = EXCLUDED.since, seen_keys = EXCLUDED.seen_keys, recent = EXCLUDED.recent,
            recent_window = EXCLUDED.recent_window, moved_at = now()
        RETURNING 1
        """,
        connection_id,
        actor_type,
        mark.since,
        list(mark.seen_keys),
        worker,
        None if mark.recent is None else json.dumps(dict(mark.recent)),
        mark.window,
    )
    return value is not None


async def erp_links(
    conn: Executor, connection_id: int, actor_type: str, keys: Sequence[str]
) -> dict[str, tuple[int, str]]:
    """ERP key -> (internal key id, CRM record id) of the linked actors among ``keys``."""
    rows = await conn.fetch(
        """
        SELECT e.erp_key, i.id, i.crm_record_id FROM external_keys e
        JOIN internal_keys i ON i.id = e.internal_key_id
        WHERE e.connection_id = $1 AND e.erp_actor_type = $2 AND e.erp_key = ANY($3::text[])
        """,
        connection_id,
        actor_type,
        list(keys),
    )
    return {r[0]: (r[1], r[2]) for r in rows}


async def crm_keys(conn: Executor, crm_actor_type: str, keys: Sequence[str]) -> dict[str, int]:
    """CRM record id -> internal key id of the registered records among ``keys``."""
    rows = await conn.fetch(
        """
        SELECT crm_record_id, id FROM internal_keys
        WHERE crm_actor_type = $1 AND crm_record_id = ANY($2::text[])
        """,
        crm_actor_type,
        list(keys),
    )
    return {r[0]: r[1] for r in rows}


async def crm_values(conn: Executor, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The CRM values of these records as of their last sync (absent: never synced)."""
    rows = await conn.fetch(
        "SELECT internal_key_id, vals FROM sync_crm_values WHERE internal_key_id = ANY($1)",
        list(ids),
    )
    # The service's pool decodes jsonb itself; a bare connection returns the text.
    return {r[0]: json.loads(r[1]) if isinstance(r[1], str) else r[1] for r in rows}


async def set_crm_values(conn: Executor, values: Mapping[int, Mapping[str, Any]]) -> None:
    """Remember the CRM values of these records as synced (merged into what was stored)."""
    if not values:
        return
    await conn.execute(
        """
        INSERT INTO sync_crm_values (internal_key_id, vals)
        SELECT k, v::jsonb FROM unnest($1::bigint[], $2::text[]) AS t(k, v)
        ON CONFLICT (internal_key_id) DO UPDATE
        SET vals = sync_crm_values.vals || EXCLUDED.vals, updated_at = now()
        """,
        list(values),
        [json.dumps(dict(v), default=str) for v in values.values()],
    )


async def unpublished_tasks(conn: Executor, source_connection_id: int) -> list[asyncpg.Record]:
    """Sync tasks of this source committed but never confirmed published (still New)."""
    return await conn.fetch(
        """
        SELECT id, request, message_id FROM batch_tasks
        WHERE name = $1 AND state = 'New' AND source_connection_id = $2 ORDER BY id
        """,
        SYNC_TASK_NAME,
        source_connection_id,
    )


async def connections_status(conn: Executor) -> list[asyncpg.Record]:
    """Every connection's schedule and watermarks, for the status endpoint and dashboard."""
    return await conn.fetch(
        """
        SELECT s.connection_id, s.next_run_at, s.run_by, s.run_started_at, s.last_run_at,
               s.last_outcome, s.last_error, s.last_changed, s.last_queued, s.last_echoes,
               s.last_unlinked, s.runs, s.caught_up_at,
               coalesce(json_agg(json_build_object(
                   'actor_type', w.actor_type, 'since', w.since, 'moved_at', w.moved_at))
                   FILTER (WHERE w.actor_type IS NOT NULL), '[]') AS watermarks,
               min(w.moved_at) AS oldest_watermark_at
        FROM sync_connections s
        LEFT JOIN sync_watermarks w ON w.connection_id = s.connection_id
        GROUP BY s.connection_id ORDER BY s.connection_id
        """
    )


async def lag_by_connection(conn: Executor) -> dict[int, float]:
    """Seconds since each connection's last complete read (connections never read: absent)."""
    rows = await conn.fetch(
        """
        SELECT connection_id, extract(epoch FROM now() - caught_up_at)::float8
        FROM sync_connections WHERE caught_up_at IS NOT NULL
        """
    )
    return {r[0]: float(r[1]) for r in rows}


async def baselines(
    conn: Executor, connection_id: int, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """The values the CRM and this connection last agreed on, by internal key."""
    rows = await conn.fetch(
        """
        SELECT internal_key_id, vals FROM sync_baseline
        WHERE connection_id = $1 AND internal_key_id = ANY($2::bigint[])
        """,
        connection_id,
        list(ids),
    )
    return {r[0]: json.loads(r[1]) if isinstance(r[1], str) else r[1] for r in rows}


async def set_baselines(
    conn: Executor, values: Mapping[tuple[int, int], Mapping[str, Any]]
) -> None:
    """Merge agreed values into the baselines, by (connection, internal key)."""
    if not values:
        return
    await conn.execute(
        """
        INSERT INTO sync_baseline (connection_id, internal_key_id, vals)
        SELECT c, k, v::jsonb FROM unnest($1::int[], $2::bigint[], $3::text[]) AS t(c, k, v)
        ON CONFLICT (connection_id, internal_key_id) DO UPDATE
        SET vals = sync_baseline.vals || EXCLUDED.vals
        """,
        [c for c, _ in values],
        [k for _, k in values],
        [json.dumps(dict(v), default=str) for v in values.values()],
    )
