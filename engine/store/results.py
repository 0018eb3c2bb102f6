"""Per-record outcomes and the sync log of field changes, written in bulk.

The row types are plain slotted dataclasses, not frozen ones: the engine builds one per record and
target (and changed field), and a frozen dataclass's ``__init__`` costs an ``object.__setattr__``
per field (measured at ~8% of a worker's CPU, docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.store import Connection, Executor


@dataclass(slots=True)
class Outcome:
    """What happened to one record on one connection.

    ``status`` is one of: updated, unchanged, created, failed, unknown_key, not_linked.
    """

    internal_key_id: int
    connection_id: int | None
    status: str
    changed_fields: int = 0
    error: str | None = None


@dataclass(slots=True)
class FieldChange:
    """One field value the engine changed (a sync log row)."""

    connection_id: int
    internal_key_id: int
    external_key_id: int | None
    erp_actor_type: str
    erp_field: str
    crm_field: str
    target_is_crm: bool
    old_value: str | None
    new_value: str | None
    conflict_winner: str | None = None
    """Continuous sync: the side ("crm", "erp") whose change won a conflict on this field."""

    @property
    def direction(self) -> str:
        return "to_crm" if self.target_is_crm else "to_erp"


_OUTCOME_COLUMNS = (
    "task_id",
    "internal_key_id",
    "connection_id",
    "status",
    "changed_fields",
    "error",
)
CHANGE_COLUMNS = (
    "connection_id",
    "internal_key_id",
    "external_key_id",
    "erp_actor_type",
    "erp_field",
    "crm_field",
    "target_is_crm",
    "old_value",
    "new_value",
)
"""The columns of a :class:`FieldChange`, in :func:`change_row` order."""
_LOG_COLUMNS = ("task_id", "direction", *CHANGE_COLUMNS, "conflict_winner")


def change_row(c: FieldChange) -> tuple[object, ...]:
    """A change's values for :data:`CHANGE_COLUMNS`."""
    return (
        c.connection_id,
        c.internal_key_id,
        c.external_key_id,
        c.erp_actor_type,
        c.erp_field,
        c.crm_field,
        c.target_is_crm,
        c.old_value,
        c.new_value,
    )


async def write(
    conn: Connection,
    task_id: int,
    outcomes: Sequence[Outcome],
    changes: Sequence[FieldChange],
) -> None:
    """Bulk-insert outcomes and sync log rows (binary COPY)."""
    if outcomes:
        await conn.copy_records_to_table(
            "record_outcomes",
            columns=_OUTCOME_COLUMNS,
            records=[
                (task_id, o.internal_key_id, o.connection_id, o.status, o.changed_fields, o.error)
                for o in outcomes
            ],
        )
    if changes:
        await conn.copy_records_to_table(
            "sync_log",
            columns=_LOG_COLUMNS,
            records=[(task_id, c.direction, *change_row(c), c.conflict_winner) for c in changes],
        )


async def mark_processed(conn: Connection, message_id: str, task_id: int | None) -> bool:
    """Record a handled message id; False when it was handled before."""
    value = await conn.fetchval(
        """
        INSERT INTO processed_messages (message_id, task_id) VALUES ($1, $2)
        ON CONFLICT DO NOTHING RETURNING 1
        """,
        message_id,
        task_id,
    )
    return value is not None


async def was_processed(conn: Executor, message_id: str) -> bool:
    """Has this message id been handled already?"""
    return bool(
        await conn.fetchval("SELECT 1 FROM processed_messages WHERE message_id = $1", message_id)
    )


async def purge_processed(conn: Executor, older_than: float) -> int:
    """Forget handled message ids older than ``older_than`` seconds; returns how many.

    A late duplicate of a command is still recognised by its task (``batch_tasks.message_id``),
    which the planner finds finished; this table only has to cover the time a task runs.
    """
    done = await conn.execute(
        "DELETE FROM processed_messages WHERE processed_at < now() - make_interval(secs => $1)",
        older_than,
    )
    return int(done.split()[-1])
