"""Links made and broken on request (the ErpSync agent's link endpoints), and what they show.

Both uniqueness rules of the key registry hold in PostgreSQL (``external_keys``' two unique
constraints); these functions say which rule a refused link breaks and which link is in the way,
so the caller can answer with a clear error. A link broken on purpose leaves a ``broken_links``
row: the record stays out of that connection's syncs until it is linked again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.store import Connection, Executor
from engine.store.keys import InternalKey, Link
from engine.store.results import CHANGE_COLUMNS, FieldChange, change_row


@dataclass(frozen=True, slots=True)
class LinkResult:
    """What a link request did: ``link`` made (or already there, ``created`` False), or refused
    because of ``conflict`` under ``rule`` ("record": the record is linked to another actor on
    that connection; "actor": the actor is linked to another record)."""

    internal_key_id: int
    link: Link | None = None
    created: bool = False
    conflict: Link | None = None
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """A link broken on purpose: who broke it and when."""

    connection_id: int
    internal_key_id: int
    erp_actor_type: str
    erp_key: str
    broken_by: str
    broken_at: datetime


_LINK_COLUMNS = "id, internal_key_id, connection_id, erp_actor_type, erp_key"


async def internal_key_of(conn: Executor, crm_actor_type: str, crm_record_id: str) -> int | None:
    """The internal key of a CRM record, if it takes part in sync."""
    value = await conn.fetchval(
        "SELECT id FROM internal_keys WHERE crm_actor_type = $1 AND crm_record_id = $2",
        crm_actor_type,
        crm_record_id,
    )
    return None if value is None else int(value)


async def link(
    conn: Connection,
    internal_key_id: int,
    connection_id: int,
    erp_actor_type: str,
    erp_key: str,
    last_modified: str | None = None,
) -> LinkResult:
    """Link the internal key to the actor, unless either is linked otherwise on the connection.

    The same link again is not an error (``created`` False). A new link clears a broken-link
    mark. Concurrent requests are decided by the unique constraints; the loser is told which
    link won.
    """
    async with conn.transaction():
        existing = await _in_the_way(conn, internal_key_id, connection_id, erp_actor_type, erp_key)
        if existing is None:
            value = await conn.fetchval(
                """
                INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type,
                                           erp_key, last_modified, last_synced_at)
                VALUES ($1, $2, $3, $4, $5, now())
                ON CONFLICT DO NOTHING RETURNING id
                """,
                internal_key_id,
                connection_id,
                erp_actor_type,
                erp_key,
                last_modified,
            )
            if value is not None:
                await conn.execute(
                    "DELETE FROM broken_links WHERE connection_id = $1 AND internal_key_id = $2",
                    connection_id,
                    internal_key_id,
                )
                made = Link(int(value), internal_key_id, connection_id, erp_actor_type, erp_key)
                return LinkResult(internal_key_id, made, created=True)
            # Another transaction linked one side after our look: its link is in the way now.
            existing = await _in_the_way(
                conn, internal_key_id, connection_id, erp_actor_type, erp_key
            )
            assert existing is not None, "ON CONFLICT without a conflicting row"
    same_record = existing.internal_key_id == internal_key_id
    if same_record and existing.erp_actor_type == erp_actor_type and existing.erp_key == erp_key:
        return LinkResult(internal_key_id, existing)
    return LinkResult(internal_key_id, conflict=existing, rule="record" if same_record else "actor")


async def _in_the_way(
    conn: Connection, internal_key_id: int, connection_id: int, erp_actor_type: str, erp_key: str
) -> Link | None:
    """The link on the connection that holds the record or the actor (the record's first)."""
    row = await conn.fetchrow(
        f"""
        SELECT {_LINK_COLUMNS} FROM external_keys
        WHERE connection_id = $1
          AND (internal_key_id = $2 OR (erp_actor_type = $3 AND erp_key = $4))
        ORDER BY (internal_key_id = $2) DESC LIMIT 1
        """,
        connection_id,
        internal_key_id,
        erp_actor_type,
        erp_key,
    )
    return None if row is None else Link(*row)


async def break_link(
    conn: Connection, internal_key_id: int, connection_id: int, broken_by: str
) -> Link | None:
    """Remove the record's link on the connection and mark it broken; None when unlinked."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""
            DELETE FROM external_keys WHERE connection_id = $1 AND internal_key_id = $2
            RETURNING {_LINK_COLUMNS}
            """,
            connection_id,
            internal_key_id,
        )
        if row is None:
            return None
        await conn.execute(
            """
            INSERT INTO broken_links (connection_id, internal_key_id, erp_actor_type, erp_key,
                                      broken_by)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (connection_id, internal_key_id) DO UPDATE
            SET erp_actor_type = excluded.erp_actor_type, erp_key = excluded.erp_key,
                broken_by = excluded.broken_by, broken_at = now()
            """,
            connection_id,
            internal_key_id,
            row["erp_actor_type"],
            row["erp_key"],
            broken_by,
        )
    return Link(*row)


async def links_of(conn: Executor, internal_key_id: int) -> list[Link]:
    """The record's links, by connection."""
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS} FROM external_keys WHERE internal_key_id = $1 "
        "ORDER BY connection_id",
        internal_key_id,
    )
    return [Link(*r) for r in rows]


# A break mark counts while the record has no link there: a link made by any path (an
# endpoint clears the mark; ``keys import`` and other writers may not) ends the break.
_STILL_BROKEN = """NOT EXISTS (SELECT 1 FROM external_keys e
                   WHERE e.connection_id = b.connection_id
                     AND e.internal_key_id = b.internal_key_id)"""


async def broken_of(conn: Executor, internal_key_id: int) -> list[BrokenLink]:
    """The record's broken links, by connection."""
    rows = await conn.fetch(
        f"""
        SELECT connection_id, internal_key_id, erp_actor_type, erp_key, broken_by, broken_at
        FROM broken_links b WHERE internal_key_id = $1 AND {_STILL_BROKEN}
        ORDER BY connection_id
        """,
        internal_key_id,
    )
    return [BrokenLink(*r) for r in rows]


async def load_for_target(
    conn: Executor, ids: Sequence[int], connection_id: int
) -> tuple[list[InternalKey], list[Link], set[int]]:
    """What a push to one connection needs, in the round trips :func:`keys.load` takes: the
    internal keys, their links to the connection, and which of them are broken there."""
    rows = await conn.fetch(
        """
        SELECT i.id, i.crm_actor_type, i.crm_record_id,
               EXISTS (SELECT 1 FROM broken_links b
                       WHERE b.connection_id = $2 AND b.internal_key_id = i.id
                         AND NOT EXISTS (SELECT 1 FROM external_keys e
                                         WHERE e.connection_id = $2
                                           AND e.internal_key_id = i.id)) AS broken
        FROM internal_keys i WHERE i.id = ANY($1::bigint[]) ORDER BY i.id
        """,
        list(ids),
        connection_id,
    )
    links = await conn.fetch(
        f"""
        SELECT {_LINK_COLUMNS} FROM external_keys
        WHERE internal_key_id = ANY($1::bigint[]) AND connection_id = $2
        """,
        list(ids),
        connection_id,
    )
    keys = [InternalKey(r[0], r[1], r[2]) for r in rows]
    return keys, [Link(*r) for r in links], {r[0] for r in rows if r[3]}


@dataclass(frozen=True, slots=True)
class ConnectionActivity:
    """A connection's links and its last sync (the latest finished task with outcomes on it, or
    the continuous sync's last successful run of it, whichever is later)."""

    links: int
    broken_links: int
    last_task_id: int | None
    last_sync: datetime | None
    last_outcomes: dict[str, int]


async def activity(conn: Connection, connection_id: int) -> ConnectionActivity:
    """Counts for the connection summary, read from the links, tasks and outcomes."""
    links = await conn.fetchval(
        "SELECT count(*) FROM external_keys WHERE connection_id = $1", connection_id
    )
    broken = await conn.fetchval(
        f"SELECT count(*) FROM broken_links b WHERE connection_id = $1 AND {_STILL_BROKEN}",
        connection_id,
    )
    # Tasks are few next to outcomes: walk them newest first, probing the outcomes' index.
    last = await conn.fetchrow(
        """
        SELECT t.id, t.finished_at FROM batch_tasks t
        WHERE t.finished_at IS NOT NULL
          AND EXISTS (SELECT 1 FROM record_outcomes o
                      WHERE o.task_id = t.id AND o.connection_id = $1)
        ORDER BY t.finished_at DESC, t.id DESC LIMIT 1
        """,
        connection_id,
    )
    # the continuous sync's last successful run of the connection is a sync too, also when it
    # found nothing to queue (then no task)
    last_run = await conn.fetchval(
        "SELECT last_run_at FROM sync_connections WHERE connection_id = $1 AND last_outcome = 'ok'",
        connection_id,
    )
    outcomes: dict[str, int] = {}
    if last is not None:
        rows = await conn.fetch(
            """
            SELECT status, count(*) FROM record_outcomes
            WHERE task_id = $1 AND connection_id = $2 GROUP BY status ORDER BY status
            """,
            last["id"],
            connection_id,
        )
        outcomes = {r[0]: int(r[1]) for r in rows}
    return ConnectionActivity(
        int(links or 0),
        int(broken or 0),
        None if last is None else int(last["id"]),
        max(
            (t for t in (None if last is None else last["finished_at"], last_run) if t),
            default=None,
        ),
        outcomes,
    )


async def most_recent_timestamps(conn: Executor) -> dict[int, str]:
    """Per connection, the ERP timestamp its continuous sync saw last: the ``since`` of its
    watermark that moved most recently (ErpConnection.MostRecentTimestamp)."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (connection_id) connection_id, since FROM sync_watermarks
        WHERE since IS NOT NULL ORDER BY connection_id, moved_at DESC, actor_type
        """
    )
    return {r[0]: r[1] for r in rows}


async def log_changes(conn: Executor, changes: Sequence[FieldChange]) -> None:
    """Sync log rows of changes made outside a task (ConnectActor's chosen values)."""
    if changes:
        await conn.executemany(
            f"INSERT INTO sync_log (direction, {', '.join(CHANGE_COLUMNS)}) "
            f"VALUES ({', '.join(f'${i}' for i in range(1, len(CHANGE_COLUMNS) + 2))})",
            [(c.direction, *change_row(c)) for c in changes],
        )
