"""Internal keys (CRM records in sync) and their links to actors on ERP connections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.store import Connection, Executor


@dataclass(slots=True)
class InternalKey:
    """A CRM record taking part in sync."""

    id: int
    crm_actor_type: str
    crm_record_id: str


@dataclass(slots=True)
class Link:
    """An internal key's actor on one connection."""

    id: int
    internal_key_id: int
    connection_id: int
    erp_actor_type: str
    erp_key: str


@dataclass(slots=True)
class LinkTouch:
    """A link whose actor was just read or written: remember its LastModified."""

    link_id: int
    last_modified: str | None


async def count_linked(conn: Executor, source_connection_id: int) -> int:
    """How many internal keys "resync all" covers for this source."""
    if source_connection_id <= 0:
        sql = "SELECT count(DISTINCT internal_key_id) FROM external_keys"
        value = await conn.fetchval(sql)
    else:
        sql = "SELECT count(*) FROM external_keys WHERE connection_id = $1"
        value = await conn.fetchval(sql, source_connection_id)
    return int(value or 0)


async def page_linked(
    conn: Connection, source_connection_id: int, after_id: int, limit: int
) -> list[int]:
    """The next page of internal key ids linked to the source, in id order (keyset paging)."""
    if source_connection_id <= 0:
        rows = await conn.fetch(
            """
            SELECT i.id FROM internal_keys i
            WHERE i.id > $1
              AND EXISTS (SELECT 1 FROM external_keys e WHERE e.internal_key_id = i.id)
            ORDER BY i.id LIMIT $2
            """,
            after_id,
            limit,
        )
    else:
        rows = await conn.fetch(
            """
            SELECT internal_key_id FROM external_keys
            WHERE connection_id = $1 AND internal_key_id > $2
            ORDER BY internal_key_id LIMIT $3
            """,
            source_connection_id,
            after_id,
            limit,
        )
    return [r[0] for r in rows]


async def existing(conn: Connection, ids: Sequence[int]) -> set[int]:
    """Which of ``ids`` are internal keys."""
    rows = await conn.fetch("SELECT id FROM internal_keys WHERE id = ANY($1::bigint[])", list(ids))
    return {r[0] for r in rows}


async def by_external_keys(
    conn: Executor, connection_id: int, erp_actor_type: str, erp_keys: Sequence[str]
) -> dict[str, int]:
    """ERP key -> internal key id of the actors of ``erp_actor_type`` on ``connection_id`` that
    are linked; ERP keys without a link are absent."""
    rows = await conn.fetch(
        """
        SELECT erp_key, internal_key_id FROM external_keys
        WHERE connection_id = $1 AND erp_actor_type = $2 AND erp_key = ANY($3::text[])
        """,
        connection_id,
        erp_actor_type,
        list(erp_keys),
    )
    return {r[0]: r[1] for r in rows}


async def linked_of_type(
    conn: Executor, connection_id: int, erp_actor_type: str, limit: int
) -> list[int]:
    """The internal key ids (at most ``limit``, in id order) linked to actors of
    ``erp_actor_type`` on ``connection_id``: what an empty ExternalKeys ("resync all") covers."""
    rows = await conn.fetch(
        """
        SELECT internal_key_id FROM external_keys
        WHERE connection_id = $1 AND erp_actor_type = $2
        ORDER BY internal_key_id LIMIT $3
        """,
        connection_id,
        erp_actor_type,
        limit,
    )
    return [r[0] for r in rows]


async def load(
    conn: Executor, ids: Sequence[int], connection_id: int | None = None
) -> tuple[list[InternalKey], list[Link]]:
    """Internal keys and all their links (only those to ``connection_id`` when given)."""
    keys = await conn.fetch(
        """
        SELECT id, crm_actor_type, crm_record_id FROM internal_keys
        WHERE id = ANY($1::bigint[]) ORDER BY id
        """,
        list(ids),
    )
    links = await conn.fetch(
        """
        SELECT id, internal_key_id, connection_id, erp_actor_type, erp_key FROM external_keys
        WHERE internal_key_id = ANY($1::bigint[]) AND ($2::int IS NULL OR connection_id = $2)
        """,
        list(ids),
        connection_id,
    )
    return [InternalKey(*r) for r in keys], [Link(*r) for r in links]


async def add_internal_key(conn: Executor, crm_actor_type: str, crm_record_id: str) -> int:
    """Register a CRM record for sync (idempotent); returns its internal key id."""
    value = await conn.fetchval(
        """
        INSERT INTO internal_keys (crm_actor_type, crm_record_id) VALUES ($1, $2)
        ON CONFLICT (crm_actor_type, crm_record_id) DO UPDATE SET updated_at = now()
        RETURNING id
        """,
        crm_actor_type,
        crm_record_id,
    )
    return int(value)


async def add_link(
    conn: Executor,
    internal_key_id: int,
    connection_id: int,
    erp_actor_type: str,
    erp_key: str,
    last_modified: str | None = None,
) -> int | None:
    """Link an internal key to an actor; None when either side is already linked."""
    value = await conn.fetchval(
        """
        INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key,
                                   last_modified, last_synced_at)
        VALUES ($1, $2, $3, $4, $5, now())
        ON CONFLICT DO NOTHING RETURNING id
        """,
        internal_key_id,
        connection_id,
        erp_actor_type,
        erp_key,
        last_modified,
    )
    return None if value is None else int(value)


async def touch_links(conn: Connection, touches: Sequence[LinkTouch]) -> None:
    """Store each link's latest LastModified and sync time, in one statement."""
    if not touches:
        return
    await conn.execute(
        """
        UPDATE external_keys e SET last_modified = coalesce(t.m, e.last_modified),
                                   last_synced_at = now()
        FROM unnest($1::bigint[], $2::text[]) AS t(id, m) WHERE e.id = t.id
        """,
        [t.link_id for t in touches],
        [t.last_modified for t in touches],
    )


async def touch_internal_keys(conn: Connection, ids: Sequence[int], stamp: str) -> None:
    """Remember that the engine wrote these CRM records."""
    if ids:
        await conn.execute(
            """
            UPDATE internal_keys SET most_recent_timestamp = $2, updated_at = now()
            WHERE id = ANY($1::bigint[])
            """,
            list(ids),
            stamp,
        )
