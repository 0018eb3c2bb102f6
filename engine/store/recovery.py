"""Recovery state: chunk ownership, worker takeovers, heartbeats, due retries and stale tasks.

Leases and heartbeats are judged from ``greatest(renewed_at, pg_postmaster_start_time())``: no
worker can renew anything while PostgreSQL is down, so after a restart every worker gets a full
``stale_after`` to renew before it is judged dead (else an outage longer than ``stale_after``
would make live workers look dead to whichever sweeper reconnected first).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass

from engine.store import Connection, Executor


@dataclass(frozen=True, slots=True)
class ChunkClaim:
    """A pending chunk a worker is about to run, and who ran it before (if anyone)."""

    previous_worker: str | None
    internal_key_ids: list[int]
    attempt: int
    target: int | None
    source: int
    """The task's source connection."""
    previous_alive: bool = False
    """``previous_worker`` is another worker with a current lease: the chunk stays its own."""
    no_blank_values: bool = False
    """The task's NoBlankValues flag (its stored request's ``NoBlankValues``)."""
    target_keys: dict[str, list[int]] | None = None
    """The task's per-target key restriction (RetryFailed), None for none."""
    task_name: str = ""
    """The task's name (a continuous sync's runs are ``Sync`` tasks)."""
    inactive: frozenset[int] = frozenset()
    """The connections inactive now (ToggleErpConnectionActive), read with the claim."""


@dataclass(frozen=True, slots=True)
class StaleTask:
    """A Started task nobody heartbeats any more, just claimed for a restart."""

    id: int
    planned: bool
    request: dict[str, object]
    message_id: str | None
    start_count: int


@dataclass(frozen=True, slots=True)
class LiveWorkers:
    """The workers whose lease is current, and how many of them run the continuous sync."""

    alive: int
    running_sync: int


async def renew_lease(conn: Executor, worker: str, runs_sync: bool = False) -> None:
    """The worker is alive now (its lease runs for ``stale_after`` from here); ``runs_sync``:
    it runs the continuous sync (its ``[sync] enabled``)."""
    await conn.execute(
        """
        INSERT INTO worker_leases (worker, runs_sync) VALUES ($1, $2)
        ON CONFLICT (worker) DO UPDATE SET renewed_at = now(), runs_sync = excluded.runs_sync
        """,
        worker,
        runs_sync,
    )


async def end_lease(conn: Executor, worker: str) -> None:
    """The worker stopped cleanly: its unfinished chunks may be taken over at once."""
    await conn.execute("DELETE FROM worker_leases WHERE worker = $1", worker)


async def worker_alive(conn: Executor, worker: str, stale_after: float) -> bool:
    """Has the worker renewed its lease within ``stale_after`` seconds?

    A lease, not the worker's sessions in ``pg_stat_activity``: a frozen process (SIGSTOP) or a
    vanished host keeps its TCP connections, and so its backends, for a long time, and behind a
    pooler the backends are not the worker's at all.
    """
    return bool(
        await conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM worker_leases WHERE worker = $1
                           AND greatest(renewed_at, pg_postmaster_start_time())
                               > now() - make_interval(secs => $2))
            """,
            worker,
            stale_after,
        )
    )


async def live_workers(conn: Executor, stale_after: float) -> LiveWorkers:
    """The workers that renewed their lease within ``stale_after`` seconds (judged as
    :func:`worker_alive` does), and how many of them run the continuous sync."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS alive, count(*) FILTER (WHERE runs_sync) AS running_sync
        FROM worker_leases
        WHERE greatest(renewed_at, pg_postmaster_start_time()) > now() - make_interval(secs => $1)
        """,
        stale_after,
    )
    assert row is not None
    return LiveWorkers(row["alive"], row["running_sync"])


async def drop_stale_leases(conn: Executor, older_than: float) -> None:
    """Forget leases of workers dead for long (takeovers are counted in ``task_takeovers``)."""
    await conn.execute(
        "DELETE FROM worker_leases WHERE renewed_at < now() - make_interval(secs => $1)",
        older_than,
    )


async def claim_chunk(
    conn: Executor, task_id: int, chunk_no: int, worker: str, stale_after: float = 0.0
) -> ChunkClaim | None:
    """Record that ``worker`` starts a pending chunk of an unfinished task (one round trip).

    Returns the chunk and who had started it before; None when the chunk is done, its task is
    finished (or stopped), or either is unknown. When that worker is another one whose lease is
    current (renewed within ``stale_after``), the chunk stays its own and ``previous_alive`` is
    set: the check and the claim are one statement, so the owner's commit never sees the chunk
    claimed away for a moment. The claim also reads which connections are inactive (the chunk
    pushes to none of them).
    """
    row = await conn.fetchrow(
        """
        UPDATE task_chunks c
        SET started_by = CASE WHEN p.alive THEN p.started_by ELSE $3 END,
            started_at = CASE WHEN p.alive THEN c.started_at ELSE now() END
        FROM (SELECT c2.started_by, t.source_connection_id, t.target_keys, t.name,
                     coalesce((t.request->>'NoBlankValues')::boolean, false) AS no_blank,
                     c2.started_by IS NOT NULL AND c2.started_by <> $3 AND EXISTS (
                         SELECT 1 FROM worker_leases l WHERE l.worker = c2.started_by
                           AND greatest(l.renewed_at, pg_postmaster_start_time())
                               > now() - make_interval(secs => $4)) AS alive
              FROM task_chunks c2
              JOIN batch_tasks t ON t.id = c2.task_id
              WHERE c2.task_id = $1 AND c2.chunk_no = $2 AND c2.state = 'pending'
                AND t.state NOT IN ('Succeeded', 'Failed', 'SucceededManualCleanup')
              FOR UPDATE OF c2) p
        WHERE c.task_id = $1 AND c.chunk_no = $2
        RETURNING p.started_by, c.internal_key_ids, c.attempt, c.target_connection_id,
                  p.source_connection_id, p.alive, p.no_blank, p.target_keys, p.name,
                  ARRAY(SELECT connection_id FROM connection_states WHERE NOT active)
        """,
        task_id,
        chunk_no,
        worker,
        stale_after,
    )
    if row is None:
        return None
    return ChunkClaim(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], frozenset(row[9])
    )


async def release_claim(conn: Executor, task_id: int, chunk_no: int, worker: str) -> None:
    """Forget ``worker``'s claim on a chunk it gave up on, so its redelivery is not dropped."""
    await conn.execute(
        """
        UPDATE task_chunks SET started_by = NULL
        WHERE task_id = $1 AND chunk_no = $2 AND started_by = $3 AND state = 'pending'
        """,
        task_id,
        chunk_no,
        worker,
    )


@contextlib.asynccontextmanager
async def planning_lock(conn: Connection, task_id: int) -> AsyncIterator[None]:
    """Serialise planners of one task across processes (a session lock on ``conn``).

    Two deliveries of one command can be in flight in different workers; the second waits here
    and then finds the command processed. The lock dies with the connection if the process does.

    ``conn`` usually comes from the pool, whose connections are released *without* a reset
    query (see :func:`engine.store.pool._no_reset`), so this lock must never outlive the block:
    it is released in ``finally``, and when that cannot be confirmed (the lock or unlock call
    failed or was cancelled half-way, or the unlock says the lock was not held) the connection
    is terminated, which drops every session lock it holds; the pool then replaces it.
    """
    key = f"erpsync:plan:{task_id}"
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    except BaseException:
        conn.terminate()  # the lock may or may not have been granted
        raise
    unlocked = False
    try:
        yield
    finally:
        try:
            with contextlib.suppress(Exception):  # a broken connection: terminated below
                unlocked = bool(
                    await conn.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
                )
        finally:
            if not unlocked:
                conn.terminate()


async def record_takeover(conn: Connection, task_id: int, dead_worker: str, worker: str) -> bool:
    """Count a restart of the task once per dead worker; True when this call counted it."""
    async with conn.transaction():
        inserted = await conn.fetchval(
            """
            INSERT INTO task_takeovers (task_id, dead_worker, taken_by) VALUES ($1, $2, $3)
            ON CONFLICT DO NOTHING RETURNING 1
            """,
            task_id,
            dead_worker,
            worker,
        )
        if inserted is None:
            return False
        await conn.execute(
            """
            UPDATE batch_tasks SET start_count = start_count + 1, last_started_at = now(),
                heartbeat_at = now()
            WHERE id = $1 AND state = 'Started'
            """,
            task_id,
        )
        return True


async def release_orphaned_chunks(
    conn: Connection, stale_after: float, limit: int, worker: str
) -> list[tuple[int, int, int | None, str]]:
    """Take pending chunks away from workers whose lease ran out, to publish them again.

    Returns (task, chunk number, target, the dead worker). RabbitMQ does not redeliver a frozen
    worker's unacked messages while its connection stays open, so the sweeper republishes the
    chunks it had started; clearing ``started_by`` also keeps that worker, should it resume,
    from committing a chunk another worker has claimed since. ``worker`` is the caller's own
    worker, never judged dead: it is running this, whatever its lease says after an outage.
    """
    rows = await conn.fetch(
        """
        UPDATE task_chunks c SET started_by = NULL
        FROM (SELECT c2.task_id, c2.chunk_no, c2.started_by FROM task_chunks c2
              JOIN batch_tasks t ON t.id = c2.task_id AND t.state = 'Started'
              WHERE c2.state = 'pending' AND c2.started_by IS NOT NULL
                AND c2.started_by <> $3
                AND NOT EXISTS (SELECT 1 FROM worker_leases l WHERE l.worker = c2.started_by
                                  AND greatest(l.renewed_at, pg_postmaster_start_time())
                                      > now() - make_interval(secs => $1))
              LIMIT $2 FOR UPDATE OF c2 SKIP LOCKED) o
        WHERE c.task_id = o.task_id AND c.chunk_no = o.chunk_no
        RETURNING c.task_id, c.chunk_no, c.target_connection_id, o.started_by
        """,
        stale_after,
        limit,
        worker,
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def heartbeat(conn: Executor, task_ids: Sequence[int]) -> None:
    """The tasks are being worked on right now."""
    if task_ids:
        await conn.execute(
            """
            UPDATE batch_tasks SET heartbeat_at = now()
            WHERE id = ANY($1::bigint[]) AND state = 'Started'
            """,
            list(task_ids),
        )


async def claim_due_retries(conn: Connection, limit: int) -> list[tuple[int, int, int | None]]:
    """Mark up to ``limit`` delayed-retry chunks whose time has come as published.

    Returns (task, chunk number, target connection). Push units are among them when their
    publish after the commit was not confirmed (their ``not_before`` is the grace for it).
    Their tasks are heartbeaten: a task that only waited for a retry was not stale, and must
    not look stale to :func:`claim_stale_tasks` now that the retry is due and on its way.
    """
    rows = await conn.fetch(
        """
        WITH claimed AS (
            UPDATE task_chunks c SET published_at = now()
            FROM (SELECT c2.task_id, c2.chunk_no FROM task_chunks c2
                  JOIN batch_tasks t ON t.id = c2.task_id AND t.state = 'Started'
                  WHERE c2.state = 'pending' AND c2.not_before IS NOT NULL
                    AND c2.published_at IS NULL AND c2.not_before <= now()
                  ORDER BY c2.not_before LIMIT $1 FOR UPDATE OF c2 SKIP LOCKED) due
            WHERE c.task_id = due.task_id AND c.chunk_no = due.chunk_no
            RETURNING c.task_id, c.chunk_no, c.target_connection_id
        ), beat AS (
            UPDATE batch_tasks SET heartbeat_at = now()
            WHERE id IN (SELECT task_id FROM claimed) AND state = 'Started'
        )
        SELECT task_id, chunk_no, target_connection_id FROM claimed
        """,
        limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def unclaim_retry(conn: Executor, task_id: int, chunk_no: int) -> None:
    """A claimed retry could not be published: let the next sweep try again."""
    await conn.execute(
        "UPDATE task_chunks SET published_at = NULL WHERE task_id = $1 AND chunk_no = $2",
        task_id,
        chunk_no,
    )


async def claim_stale_tasks(
    conn: Connection, stale_after: float, limit: int, backlogged: Collection[int] = ()
) -> list[StaleTask]:
    """Restart Started tasks without a heartbeat for ``stale_after`` seconds that have work left.

    A task only waiting for delayed retries that are not due yet is not stale. Nor is a planned
    task with runnable chunks routed to a ``backlogged`` queue (ready messages waiting: target
    ids for push queues, -1 for the chunk queue): its messages may be queued behind other work,
    so republishing them would only add duplicates to the backlog and counting a start would
    fail a task for being patient. Such a task only gets its heartbeat refreshed and is looked
    at again after another ``stale_after``. Claiming counts the restart (of a planned task; the
    planner counts its own) and refreshes the heartbeat, so concurrent sweepers pick each task
    up once.
    """
    rows = await conn.fetch(
        """
        WITH stale AS (
            SELECT s.id, s.planned AND EXISTS (
                       SELECT 1 FROM task_chunks c WHERE c.task_id = s.id AND c.state = 'pending'
                         AND coalesce(c.not_before, '-infinity') <= now()
                         AND coalesce(c.target_connection_id, -1) = ANY($3::int[])) AS waiting
            FROM batch_tasks s
            WHERE s.state = 'Started'
              AND greatest(s.heartbeat_at, pg_postmaster_start_time())
                  < now() - make_interval(secs => $1)
              AND (NOT s.planned OR EXISTS (
                   SELECT 1 FROM task_chunks c WHERE c.task_id = s.id AND c.state = 'pending'
                     AND coalesce(c.not_before, '-infinity') <= now()))
            ORDER BY s.heartbeat_at LIMIT $2 FOR UPDATE OF s SKIP LOCKED)
        UPDATE batch_tasks t SET heartbeat_at = now(),
            -- an unplanned task is counted by the planner when it starts again
            start_count = start_count + CASE WHEN t.planned AND NOT stale.waiting THEN 1 ELSE 0 END,
            last_started_at = CASE WHEN t.planned AND NOT stale.waiting THEN now()
                                   ELSE last_started_at END
        FROM stale
        WHERE t.id = stale.id
        RETURNING t.id, t.planned, t.request, t.message_id, t.start_count, stale.waiting
        """,
        stale_after,
        limit,
        list(backlogged),
    )
    return [StaleTask(r[0], r[1], r[2], r[3], r[4]) for r in rows if not r[5]]


async def due_pending_chunks(
    conn: Executor, task_id: int, after_chunk_no: int, limit: int
) -> list[tuple[int, int | None]]:
    """The next page of a task's pending chunks that may run now: (chunk number, target)."""
    rows = await conn.fetch(
        """
        SELECT chunk_no, target_connection_id FROM task_chunks
        WHERE task_id = $1 AND chunk_no > $2 AND state = 'pending'
          AND coalesce(not_before, '-infinity') <= now()
        ORDER BY chunk_no LIMIT $3
        """,
        task_id,
        after_chunk_no,
        limit,
    )
    return [(r[0], r[1]) for r in rows]


async def mark_published(conn: Executor, task_id: int, chunk_nos: Sequence[int]) -> None:
    """Chunks published (by a restart, or push units after their commit): delayed retries and
    units among them are no longer waiting for the sweeper."""
    await conn.execute(
        """
        UPDATE task_chunks SET published_at = now()
        WHERE task_id = $1 AND chunk_no = ANY($2::int[]) AND not_before IS NOT NULL
        """,
        task_id,
        list(chunk_nos),
    )
