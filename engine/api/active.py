"""The front door's view of which connections are inactive (ToggleErpConnectionActive).

ForceResyncBatchTask refuses a resync from an inactive connection. Reading the state from
PostgreSQL on every request would add a round trip to the hot path, so each process keeps the
inactive set for :data:`KEPT` seconds: at most one read per process in that time, shared by the
requests that find it expired together. A toggle made through this process is seen at once;
one made through another process within :data:`KEPT` seconds. The workers check the state
again when they plan a task (:func:`engine.store.tasks.start`), so a request that slipped
through in that window ends as a Failed task saying why, never as a sync of the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg

from engine.store import connection_states

KEPT = 2.0
"""Seconds a process keeps the inactive set before reading it again."""


class ActiveConnections:
    """The inactive set, kept :data:`KEPT` seconds per process."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], kept: float = KEPT) -> None:
        self._pool = pool
        self._kept = kept
        self._inactive: frozenset[int] = frozenset()
        self._until = 0.0
        self._reading: asyncio.Future[frozenset[int]] | None = None

    async def inactive(self) -> frozenset[int]:
        """The inactive connection ids (kept for a while: see the module)."""
        if time.monotonic() < self._until:
            return self._inactive
        if self._reading is None:  # the first caller reads; the others wait for its answer
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        return await asyncio.shield(reading)

    async def is_active(self, connection_id: int) -> bool:
        return connection_id not in await self.inactive()

    async def _read(self) -> frozenset[int]:
        try:
            found = await connection_states.inactive(self._pool())
            self._inactive, self._until = found, time.monotonic() + self._kept
            return found
        finally:
            self._reading = None

    def changed(self, connection_id: int, active: bool) -> None:
        """This process toggled a connection: its own requests see it at once."""
        if active:
            self._inactive = self._inactive - {connection_id}
        else:
            self._inactive = self._inactive | {connection_id}
