"""Whether a configured connection is active (SuperOffice's ErpConnection ``Active``).

Connections are configured, not stored; ``connection_states`` holds only the override set by
ToggleErpConnectionActive. A connection without a row is active. The CRM (connection 0) is
always active.

Every change notifies channel :data:`CHANNEL` at commit (migration 0017, a trigger: whatever
statement made it); :func:`notified` reads the payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.store import Executor


@dataclass(frozen=True, slots=True)
class Toggled:
    """A connection's state after a toggle."""

    connection_id: int
    active: bool


CHANNEL = "erpsync_connection_state"
"""Notified with a connection's state after each change of ``connection_states``."""


def notified(payload: str) -> Toggled | None:
    """The state a notification of :data:`CHANNEL` carries; None when it says "read everything
    again" (a truncate) or cannot be read."""
    try:
        data = json.loads(payload)
        connection_id, active = data["connection_id"], data["active"]
    except (ValueError, TypeError, KeyError):
        return None
    if type(connection_id) is not int or type(active) is not bool:
        return None
    return Toggled(connection_id, active)


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
