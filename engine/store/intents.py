"""Change intents: the field changes a run is about to write, recorded before the write.

A run records its intended changes in a short transaction of their own before the connector's
save, and its commit settles them (deletes them) with the sync log. A change whose save reached
the target but whose commit never happened (the worker, the broker channel or PostgreSQL went
away in between) is still there when the chunk runs again: the run finds the target's value equal
to the intent's new value and logs the intent instead of recording ``unchanged`` without a row.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from engine.store import Connection, Executor
from engine.store.results import CHANGE_COLUMNS, FieldChange, change_row

_COLUMNS = ("task_id", "chunk_no", *CHANGE_COLUMNS, "conflict_winner")


async def record(
    conn: Connection, task_id: int, chunk_no: int, changes: Sequence[FieldChange]
) -> None:
    """Store the changes about to be written (binary COPY; the caller commits before writing)."""
    if not changes:
        return
    await conn.copy_records_to_table(
        "change_intents",
        columns=_COLUMNS,
        records=[(task_id, chunk_no, *change_row(c), c.conflict_winner) for c in changes],
    )


async def unsettled(
    conn: Executor, task_id: int, internal_key_ids: Collection[int]
) -> list[FieldChange]:
    """The task's unsettled intents on these records (oldest first)."""
    rows = await conn.fetch(
        f"""
        SELECT {", ".join(CHANGE_COLUMNS)}, conflict_winner
        FROM change_intents WHERE task_id = $1 AND internal_key_id = ANY($2::bigint[])
        ORDER BY recorded_at
        """,
        task_id,
        list(internal_key_ids),
    )
    return [FieldChange(*r) for r in rows]


async def settle(
    conn: Connection,
    task_id: int,
    target_is_crm: bool,
    connection_id: int | None,
    internal_key_ids: Collection[int],
) -> None:
    """Drop the intents of records whose outcome is final: logged if applied, else not written.

    ``connection_id`` None settles the records' changes on any connection of that direction.
    """
    if internal_key_ids:
        await conn.execute(
            """
            DELETE FROM change_intents
            WHERE task_id = $1 AND internal_key_id = ANY($2::bigint[]) AND target_is_crm = $3
              AND ($4::int IS NULL OR connection_id = $4)
            """,
            task_id,
            list(internal_key_ids),
            target_is_crm,
            connection_id,
        )


async def settle_task(conn: Executor, task_id: int) -> None:
    """Drop whatever a finished task left (a duplicate delivery that lost the commit)."""
    await conn.execute("DELETE FROM change_intents WHERE task_id = $1", task_id)
