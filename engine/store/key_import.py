"""SQL of the key-registry import and export (``erpsync keys``): the registry rows an import
touches, written with their ids kept, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.store import Connection


@dataclass(frozen=True, slots=True)
class InternalRow:
    """One ``internal_keys`` row (SuperOffice ErpInternalKey)."""

    id: int
    crm_actor_type: str
    crm_record_id: str
    most_recent_timestamp: str | None


@dataclass(frozen=True, slots=True)
class ExternalRow:
    """One ``external_keys`` row (SuperOffice ErpExternalKey)."""

    id: int
    internal_key_id: int
    connection_id: int
    erp_actor_type: str
    erp_key: str
    last_modified: str | None


async def lock(conn: Connection) -> None:
    """Keep other writers of the registry out until the transaction ends (reads go on)."""
    await conn.execute("LOCK TABLE internal_keys, external_keys IN SHARE ROW EXCLUSIVE MODE")


async def internal_clashes(
    conn: Connection, ids: Sequence[int], types: Sequence[str], records: Sequence[str]
) -> list[InternalRow]:
    """Existing internal keys with one of ``ids`` or one of the (type, record) pairs."""
    rows = await conn.fetch(
        """
        SELECT id, crm_actor_type, crm_record_id, most_recent_timestamp FROM internal_keys
        WHERE id = ANY($1::bigint[])
           OR (crm_actor_type, crm_record_id) IN (
                SELECT * FROM unnest($2::text[], $3::text[]))
        """,
        list(ids),
        list(types),
        list(records),
    )
    return [InternalRow(*r) for r in rows]


async def external_clashes(
    conn: Connection,
    ids: Sequence[int],
    connections: Sequence[int],
    internal_ids: Sequence[int],
    actor_types: Sequence[str],
    erp_keys: Sequence[str],
) -> list[ExternalRow]:
    """Existing links with one of ``ids``, or on a (connection, internal key) or a
    (connection, actor type, ERP key) of the import: the rows its uniqueness rules meet."""
    rows = await conn.fetch(
        """
        SELECT id, internal_key_id, connection_id, erp_actor_type, erp_key, last_modified
        FROM external_keys
        WHERE id = ANY($1::bigint[])
           OR (connection_id, internal_key_id) IN (
                SELECT * FROM unnest($2::int[], $3::bigint[]))
           OR (connection_id, erp_actor_type, erp_key) IN (
                SELECT * FROM unnest($2::int[], $4::text[], $5::text[]))
        """,
        list(ids),
        list(connections),
        list(internal_ids),
        list(actor_types),
        list(erp_keys),
    )
    return [ExternalRow(*r) for r in rows]


async def write_internal(conn: Connection, rows: Sequence[InternalRow]) -> None:
    """Insert the rows with their ids, or update the timestamp of those that exist."""
    if not rows:
        return
    await conn.execute(
        """
        INSERT INTO internal_keys (id, crm_actor_type, crm_record_id, most_recent_timestamp)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
        ON CONFLICT (id) DO UPDATE
        SET most_recent_timestamp = EXCLUDED.most_recent_timestamp, updated_at = now()
        """,
        [r.id for r in rows],
        [r.crm_actor_type for r in rows],
        [r.crm_record_id for r in rows],
        [r.most_recent_timestamp for r in rows],
    )


async def write_external(conn: Connection, rows: Sequence[ExternalRow]) -> None:
    """Insert the links with their ids, or update the LastModified of those that exist."""
    if not rows:
        return
    await conn.execute(
        """
        INSERT INTO external_keys (id, internal_key_id, connection_id, erp_actor_type, erp_key,
                                   last_modified)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::text[],
                             $6::text[])
        ON CONFLICT (id) DO UPDATE SET last_modified = EXCLUDED.last_modified
        """,
        [r.id for r in rows],
        [r.internal_key_id for r in rows],
        [r.connection_id for r in rows],
        [r.erp_actor_type for r in rows],
        [r.erp_key for r in rows],
        [r.last_modified for r in rows],
    )


async def bump_sequences(conn: Connection) -> None:
    """New keys and links get ids above the imported ones."""
    await conn.execute(
        """
        SELECT setval('internal_keys_id_seq', greatest(
                   (SELECT coalesce(max(id), 0) FROM internal_keys), 1)),
               setval('external_keys_id_seq', greatest(
                   (SELECT coalesce(max(id), 0) FROM external_keys), 1))
        """
    )


async def all_internal(conn: Connection) -> list[InternalRow]:
    """Every internal key, in id order (for the export)."""
    rows = await conn.fetch(
        "SELECT id, crm_actor_type, crm_record_id, most_recent_timestamp FROM internal_keys "
        "ORDER BY id"
    )
    return [InternalRow(*r) for r in rows]


async def all_external(conn: Connection) -> list[ExternalRow]:
    """Every link, in id order (for the export)."""
    rows = await conn.fetch(
        "SELECT id, internal_key_id, connection_id, erp_actor_type, erp_key, last_modified "
        "FROM external_keys ORDER BY id"
    )
    return [ExternalRow(*r) for r in rows]
