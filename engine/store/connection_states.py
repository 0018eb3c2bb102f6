"""Whether a configured connection is active (SuperOffice's ErpConnection ``Active``).

Connections are configured, not stored; ``connection_states`` holds only the override set by
ToggleErpConnectionActive. A connection without a row is active. The CRM (connection 0) is
always active.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.store import Executor


@dataclass(frozen=True, slots=True)
class Toggled:
    """A connection's state after a toggle."""

    connection_id: int
    active: bool


async def inactive(conn: Executor) -> frozenset[int]:
    """The ids of the connections set inactive (rows of unconfigured ids included)."""
    rows = await conn.fetch("SELECT connection_id FROM connection_states WHERE NOT active")
    return frozenset(r[0] for r in rows)


async def toggle(
    conn: Executor, connection_id: int, by: str, active: bool | None = None
) -> Toggled:
    """Flip the connection's state (a connection without a row is active, so its first toggle
    makes it inactive), or set it to ``active`` when given. One statement: concurrent toggles
    each flip once."""
    value = await conn.fetchval(
        """
        INSERT INTO connection_states AS s (connection_id, active, changed_by)
        VALUES ($1, coalesce($3, false), $2)
        ON CONFLICT (connection_id) DO UPDATE
        SET active = coalesce($3, NOT s.active), changed_at = now(), changed_by = $2
        RETURNING active
        """,
        connection_id,
        by[:100],
        active,
    )
    return Toggled(connection_id, bool(value))
