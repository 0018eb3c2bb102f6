"""Batch tasks and their chunks: creation, claiming, progress and completion."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.store import Connection, Executor

RESYNC_TASK_NAME = "ForceResyncBatchTask"
TERMINAL_STATES = ("Succeeded", "Failed", "SucceededManualCleanup")
RETRY_CHUNK_BASE = 1 << 30
"""Delayed-retry chunks are numbered from here, so they never collide with planned ones."""


@dataclass(frozen=True, slots=True)
class ChunkCounts:
    """What one chunk did, added to its task's counters when the chunk commits."""

    records: int = 0
    unknown_keys: int = 0
    updated: int = 0
    unchanged: int = 0
    created: int = 0
    failed: int = 0
    fields_changed: int = 0
    work: int = 0
    """(record, connection) steps this chunk finished for good, for the progress."""


async def create(
    conn: Executor,
    *,
    source_connection_id: int,
    request: dict[str, Any],
    message_id: str | None = None,
    correlation_id: str | None = None,
    name: str = RESYNC_TASK_NAME,
    target_keys: Mapping[int, Sequence[int]] | None = None,
    description: str | None = None,
) -> int:
    """Insert a task in state New; with a known ``message_id`` return the existing task.

    ``target_keys``: per target connection, the only keys pushed there (RetryFailed); a key
    named under no target goes to every target.
    """
    task_id: int | None = await conn.fetchval(
        """
        INSERT INTO batch_tasks (name, source_connection_id, request, message_id, correlation_id,
                                 description, target_keys)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (message_id) DO NOTHING
        RETURNING id
        """,
        name,
        source_connection_id,
        request,
        message_id,
        correlation_id,
        description or describe_source(source_connection_id),
        None if target_keys is None else {str(t): list(k) for t, k in target_keys.items()},
    )
    if task_id is None:
        task_id = await conn.fetchval(
            "SELECT id FROM batch_tasks WHERE message_id = $1", message_id
        )
    assert task_id is not None
    return task_id


def record_counts(task: asyncpg.Record | Mapping[str, Any]) -> dict[str, int]:
    """A task row's record and write counts under their wire names (GetBatchTaskInfo's
    ``Statistics`` and the task.finished event's ``Counts``)."""
    return {
        "TotalRecords": task["total_records"],
        "DoneRecords": task["done_records"],
        "UnknownKeys": task["unknown_keys"],
        "Updated": task["writes_updated"],
        "Unchanged": task["writes_unchanged"],
        "Created": task["writes_created"],
        "Failed": task["writes_failed"],
        "FieldsChanged": task["fields_changed"],
    }


def describe_source(source_connection_id: int) -> str:
    """The task's description for a source connection."""
    source = "CRM" if source_connection_id <= 0 else f"connection {source_connection_id}"
    return f"Force resync from {source} to all other connections"


async def set_message_id(pool: asyncpg.Pool, task_id: int, message_id: str) -> None:
    """Remember which message carries the task's command."""
    await pool.execute("UPDATE batch_tasks SET message_id = $2 WHERE id = $1", task_id, message_id)


async def fail_unqueued(pool: asyncpg.Pool, task_id: int, reason: str) -> None:
    """Close a task whose command never reached the broker, so none stays New forever."""
    await pool.execute(
        """
        UPDATE batch_tasks SET state = 'Failed', response = $2, finished_at = now()
        WHERE id = $1 AND state = 'New'
        """,
        task_id,
        reason[:254],
    )


async def get(conn: Executor, task_id: int) -> asyncpg.Record | None:
    """One task by id."""
    return await conn.fetchrow("SELECT * FROM batch_tasks WHERE id = $1", task_id)


async def list_by_name_and_state(
    pool: asyncpg.Pool,
    name: str | None,
    states: Sequence[str] | None,
    limit: int = 1000,
    *,
    sources: Collection[int] | None = None,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> list[asyncpg.Record]:
    """Tasks filtered by name, state, (unless None) source connection and the command's
    correlation/message id, newest first."""
    return list(
        await pool.fetch(
            """
            SELECT * FROM batch_tasks
            WHERE ($1::text IS NULL OR name = $1) AND ($2::text[] IS NULL OR state = ANY($2))
              AND ($4::int[] IS NULL OR source_connection_id = ANY($4))
              AND ($5::text IS NULL OR correlation_id = $5)
              AND ($6::text IS NULL OR message_id = $6)
            ORDER BY id DESC LIMIT $3
            """,
            name,
            list(states) if states is not None else None,
            limit,
            sorted(sources) if sources is not None else None,
            correlation_id,
            message_id,
        )
    )


async def start(
    conn: Connection, task_id: int, worker: str | None = None, stale_after: float = 0.0
) -> asyncpg.Record | None:
    """Mark a task Started by ``worker``'s planner; None when it is already finished.

    The start is counted unless the task's last planner is another worker whose lease is
    current (renewed within ``stale_after``): then the command was only delivered again (a
    channel closed, the broker restarted) and nothing restarted. Without a ``worker`` every
    start counts.

    The row has ``source_active``: false when the task's source connection is inactive
    (ToggleErpConnectionActive), read in the same statement.
    """
    return await conn.fetchrow(
        """
        UPDATE batch_tasks t
        SET state = 'Started', last_started_at = now(), heartbeat_at = now(),
            progress_description = 'Planning', planned_by = $2,
            start_count = start_count + CASE
                WHEN t.state <> 'New' AND $2::text IS NOT NULL AND EXISTS (
                    SELECT 1 FROM worker_leases l WHERE l.worker = t.planned_by
                      AND greatest(l.renewed_at, pg_postmaster_start_time())
                          > now() - make_interval(secs => $3))
                THEN 0 ELSE 1 END
        WHERE id = $1 AND state NOT IN ('Succeeded', 'Failed', 'SucceededManualCleanup')
        RETURNING *, NOT EXISTS (
            SELECT 1 FROM connection_states c
            WHERE c.connection_id = t.source_connection_id AND NOT c.active) AS source_active
        """,
        task_id,
        worker,
        stale_after,
    )


async def small_ones(conn: Executor, task_ids: Sequence[int], most_records: int) -> set[int]:
    """Those of ``task_ids`` with at least one and at most ``most_records`` records."""
    rows = await conn.fetch(
        """SELECT id FROM batch_tasks
           WHERE id = ANY($1::bigint[]) AND total_records BETWEEN 1 AND $2""",
        list(task_ids),
        most_records,
    )
    return {row["id"] for row in rows}


async def set_total(conn: Connection, task_id: int, total: int, unknown: int) -> None:
    """Record how many records the task covers and how many requested ids were unknown."""
    await conn.execute(
        "UPDATE batch_tasks SET total_records = $2, unknown_keys = $3 WHERE id = $1",
        task_id,
        total,
        unknown,
    )


async def planned_extent(conn: Connection, task_id: int) -> tuple[int, int]:
    """How many chunks the planner stored so far and the last key they cover (0 if none)."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS chunks,
               (SELECT internal_key_ids[array_upper(internal_key_ids, 1)] FROM task_chunks
                WHERE task_id = $1 AND chunk_no < $2 ORDER BY chunk_no DESC LIMIT 1) AS last_key
        FROM task_chunks WHERE task_id = $1 AND chunk_no < $2
        """,
        task_id,
        RETRY_CHUNK_BASE,
    )
    assert row is not None
    return int(row["chunks"]), int(row["last_key"] or 0)


async def pending_planned(
    conn: Connection, task_id: int, after_chunk_no: int, limit: int
) -> list[int]:
    """The next page of planned chunks not done yet (keyset paging by chunk number)."""
    rows = await conn.fetch(
        """
        SELECT chunk_no FROM task_chunks
        WHERE task_id = $1 AND chunk_no > $2 AND chunk_no < $3 AND state = 'pending'
        ORDER BY chunk_no LIMIT $4
        """,
        task_id,
        after_chunk_no,
        RETRY_CHUNK_BASE,
        limit,
    )
    return [r[0] for r in rows]


async def add_chunks(
    conn: Connection, task_id: int, first_chunk_no: int, chunks: Sequence[Sequence[int]]
) -> None:
    """Store planned chunks numbered from ``first_chunk_no`` (one pipelined round trip)."""
    await conn.executemany(
        """
        INSERT INTO task_chunks (task_id, chunk_no, internal_key_ids) VALUES ($1, $2, $3)
        ON CONFLICT DO NOTHING
        """,
        [(task_id, first_chunk_no + i, list(keys)) for i, keys in enumerate(chunks)],
    )


async def get_chunk(conn: Executor, task_id: int, chunk_no: int) -> asyncpg.Record | None:
    """One chunk with its keys and state."""
    return await conn.fetchrow(
        "SELECT * FROM task_chunks WHERE task_id = $1 AND chunk_no = $2", task_id, chunk_no
    )


async def mark_planned(conn: Connection, task_id: int, total_chunks: int) -> asyncpg.Record:
    """Planning is complete; returns the task row (locked until the transaction ends)."""
    row = await conn.fetchrow(
        """
        UPDATE batch_tasks SET planned = true, total_chunks = $2, heartbeat_at = now(),
            progress_description = CASE WHEN done_chunks < $2 THEN 'Running'
                                        ELSE progress_description END
        WHERE id = $1 RETURNING *
        """,
        task_id,
        total_chunks,
    )
    assert row is not None
    return row


async def mark_chunk_done(conn: Connection, task_id: int, chunk_no: int, worker: str) -> bool:
    """Mark a chunk done by ``worker``; False if it was already done (duplicate delivery) or
    another worker has taken it over since (this one froze and its lease ran out)."""
    marked = await conn.fetchval(
        """
        UPDATE task_chunks SET state = 'done', done_at = now(), done_by = $3
        WHERE task_id = $1 AND chunk_no = $2 AND state = 'pending'
          AND (started_by IS NULL OR started_by = $3) RETURNING 1
        """,
        task_id,
        chunk_no,
        worker,
    )
    return marked is not None


@dataclass(frozen=True, slots=True)
class RetryChunk:
    """Records to run later on one target (or whole, when ``target`` is None).

    A delayed retry, or (``unit``) a push unit: stage 2 of a chunk, pushing the CRM values of
    its records to one target connection.
    """

    internal_key_ids: Sequence[int]
    target: int | None
    attempt: int
    delay: float
    unit: bool = False


async def add_retry_chunks(
    conn: Connection, task_id: int, retries: Sequence[RetryChunk]
) -> list[tuple[int, int | None]]:
    """Store delayed-retry chunks and push units; returns their (chunk number, target).

    Each waits for ``not_before`` = now + its delay, after which the sweeper publishes it unless
    it was published already (``published_at``): push units are published right after the
    commit, their delay only covers a crash before that.
    """
    if not retries:
        return []
    units = sum(1 for r in retries if r.unit)
    last = await conn.fetchval(
        "UPDATE batch_tasks SET retry_chunks = retry_chunks + $2, push_units = push_units + $3 "
        "WHERE id = $1 RETURNING retry_chunks",
        task_id,
        len(retries),
        units,
    )
    first = RETRY_CHUNK_BASE + int(last) - len(retries)
    await conn.executemany(
        """
        INSERT INTO task_chunks (task_id, chunk_no, internal_key_ids, attempt,
                                 target_connection_id, not_before)
        VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
        """,
        [
            (task_id, first + i, list(r.internal_key_ids), r.attempt, r.target, r.delay)
            for i, r in enumerate(retries)
        ],
    )
    return [(first + i, r.target) for i, r in enumerate(retries)]


async def add_counts(
    conn: Connection, task_id: int, counts: ChunkCounts, connections: int = 1
) -> asyncpg.Record:
    """Add a committed chunk's counts to its task; returns the task row (locked).

    The progress is ``done_work`` over ``total_records x connections`` (the source step and one
    push per target connection for every record), below 100 until the task finishes.
    """
    row = await conn.fetchrow(
        """
        UPDATE batch_tasks SET
            done_chunks = done_chunks + 1,
            done_records = done_records + $2,
            writes_updated = writes_updated + $3,
            writes_unchanged = writes_unchanged + $4,
            writes_created = writes_created + $5,
            writes_failed = writes_failed + $6,
            fields_changed = fields_changed + $7,
            done_work = done_work + $8,
            heartbeat_at = now(),
            progress_percent = LEAST(99, ((done_work + $8) * 100
                / GREATEST(coalesce(total_records, 0) * $9::bigint, 1)))::smallint,
            progress_description = format(
                '%s of %s records read; %s of %s chunks and push units done',
                done_records + $2, coalesce(total_records::text, '?'), done_chunks + 1,
                CASE WHEN planned THEN (total_chunks + retry_chunks)::text ELSE '?' END)
        WHERE id = $1 RETURNING *
        """,
        task_id,
        counts.records,
        counts.updated,
        counts.unchanged,
        counts.created,
        counts.failed,
        counts.fields_changed,
        counts.work,
        connections,
    )
    assert row is not None
    return row


def is_complete(task: asyncpg.Record | Mapping[str, Any]) -> bool:
    """All chunks (planned and delayed retries) of a fully planned, running task are done.

    A task stopped while its last chunks ran counts as running: when those commit, nothing
    was skipped, so it finishes like any other (see :func:`finish`).
    """
    stopped = task["state"] == "Failed" and task["stopped_at"] is not None
    return bool(
        (task["state"] == "Started" or stopped)
        and task["planned"]
        and task["done_chunks"] >= task["total_chunks"] + task["retry_chunks"]
    )


def counted(n: int, noun: str) -> str:
    """``1 record``, ``2 records``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary(task: asyncpg.Record, not_linked: Mapping[str, int] | None = None) -> str:
    """The short ``Response`` text of a finished task (SuperOffice keeps it to 254 chars).

    ``not_linked``: per connection label, the records skipped there for want of a link.
    """
    writes = [f"{task['writes_updated']} updated", f"{task['writes_unchanged']} unchanged"]
    if task["writes_created"]:
        writes.append(f"{task['writes_created']} created")
    writes.append(f"{task['writes_failed']} failed")
    text = (
        f"{counted(task['done_records'], 'record')}; writes: {', '.join(writes)}; "
        f"{counted(task['fields_changed'], 'field')} changed"
    )
    if task["unknown_keys"]:
        text += f"; {counted(task['unknown_keys'], 'unknown internal key')}"
    if not_linked:
        text += "; " + ", ".join(
            f"{counted(n, 'record')} not linked to {label}" for label, n in not_linked.items()
        )
        text += " (link them, or set create_missing to create them)"
    return text[:254]


def only_unknown_keys(task: asyncpg.Record) -> bool:
    """Every requested internal key was unknown: there was nothing to resync."""
    return bool(task["unknown_keys"]) and not task["total_records"]


async def not_linked_by_connection(conn: Executor, task_id: int) -> dict[int, int]:
    """Per connection, how many of the task's records were skipped for want of a link."""
    rows = await conn.fetch(
        """
        SELECT connection_id, count(*) AS n FROM record_outcomes
        WHERE task_id = $1 AND status = 'not_linked' AND connection_id IS NOT NULL
        GROUP BY connection_id ORDER BY connection_id
        """,
        task_id,
    )
    return {r["connection_id"]: r["n"] for r in rows}


async def finish(
    conn: Connection,
    task: asyncpg.Record,
    failure_detail: str = "",
    names: Mapping[int, str] | None = None,
) -> tuple[str, str]:
    """Move a complete task to Succeeded or Failed with its summary; returns both.

    A task whose every requested key was unknown fails (nothing was resynced, and a caller
    watching only the state must notice); records without a link to a connection are named in
    the summary (``names``: connection names by id).
    """
    if only_unknown_keys(task):
        state = "Failed"
        n = task["unknown_keys"]
        keys = "the requested internal key is" if n == 1 else f"all {n} requested internal keys are"
        text = f"Nothing resynced: {keys} unknown (no such record); see the task's failures"
    else:
        state = "Failed" if task["writes_failed"] else "Succeeded"
        names = names or {}
        not_linked = {
            f"connection {cid}" + (f" ({names[cid]})" if cid in names else ""): n
            for cid, n in (await not_linked_by_connection(conn, task["id"])).items()
        }
        text = summary(task, not_linked)
        if task["stopped_at"] is not None:  # the stop skipped nothing: it is not a failure
            by = task["stopped_by"] or "request"
            text = f"Stop by {by} came after all work had begun; {text}"
    if failure_detail:
        text = f"{text}; {failure_detail}"
    await conn.execute(
        """
        UPDATE batch_tasks SET state = $2, response = $3, finished_at = now(),
            progress_percent = 100, progress_description = 'Finished', stopped_at = NULL
        WHERE id = $1 AND (state = 'Started' OR (state = 'Failed' AND stopped_at IS NOT NULL))
        """,
        task["id"],
        state,
        text[:254],
    )
    return state, text


async def fail(conn: Executor, task_id: int, reason: str) -> None:
    """End a task as Failed with ``reason`` (configuration errors, invalid commands)."""
    await conn.execute(
        """
        UPDATE batch_tasks SET state = 'Failed', response = $2, finished_at = now(),
            progress_description = 'Failed'
        WHERE id = $1 AND state NOT IN ('Succeeded', 'Failed', 'SucceededManualCleanup')
        """,
        task_id,
        reason[:254],
    )


async def first_failures(conn: Executor, task_id: int, limit: int = 3) -> list[asyncpg.Record]:
    """A few failed outcomes, for the task's Response."""
    return list(
        await conn.fetch(
            """
            SELECT connection_id, internal_key_id, error FROM record_outcomes
            WHERE task_id = $1 AND status = 'failed' ORDER BY id LIMIT $2
            """,
            task_id,
            limit,
        )
    )


async def failed_records(conn: Executor, task_id: int) -> list[tuple[int, int | None]]:
    """Every (internal key, connection) whose outcome in the task is ``failed``, in key order."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT internal_key_id, connection_id FROM record_outcomes
        WHERE task_id = $1 AND status = 'failed' ORDER BY 1, 2
        """,
        task_id,
    )
    return [(r[0], r[1]) for r in rows]


def stopped_response(task: asyncpg.Record) -> str:
    """The ``Response`` of a stopped task: who stopped it and what was done until then."""
    text = (
        f"Stopped by {task['stopped_by'] or 'request'} after {task['done_chunks']} of "
        f"{task['total_chunks'] + task['retry_chunks'] if task['planned'] else '?'} "
        f"chunks and push units; {summary(task)}"
    )
    return text[:254]


async def stop(conn: Executor, task_id: int, stopped_by: str) -> asyncpg.Record | None:
    """StopBatchJob: end an unfinished task as Failed, marked stopped; None if already finished.

    Chunks not yet started are then skipped by the runner (the task is terminal); a chunk that
    is running commits normally, so its writes still count in the task's statistics.
    """
    row = await conn.fetchrow(
        """
        UPDATE batch_tasks SET state = 'Failed', stopped_at = now(), stopped_by = $2,
            finished_at = now(), progress_description = 'Stopped'
        WHERE id = $1 AND state NOT IN ('Succeeded', 'Failed', 'SucceededManualCleanup')
        RETURNING *
        """,
        task_id,
        stopped_by[:100],
    )
    if row is None:
        return None
    await conn.execute(
        "UPDATE batch_tasks SET response = $2 WHERE id = $1", task_id, stopped_response(row)
    )
    return row
