"""The front door's view of which connections are inactive (ToggleErpConnectionActive).

ForceResyncBatchTask refuses a resync from an inactive connection. Reading the state from
PostgreSQL on every request would add a round trip to the hot path, so each process keeps the
inactive set in memory and PostgreSQL tells it of every change: migration 0017 notifies channel
``erpsync_connection_state`` at commit, whatever statement changed a state, and
:meth:`ActiveConnections.follow` applies each notification as it arrives on the process's LISTEN
connection (:class:`~engine.store.listener.Listener`). A toggle made through any process is
thus seen by every process within one notification round trip. The set is read (by the next
request) only when the listener (re)connects, so nothing notified while it was down is missed,
and after a toggle made through this process (see :meth:`ActiveConnections.changed`).

While the listener is down the set is kept :data:`KEPT` seconds and read again (at most one read
per process in that time, shared by the requests that find it expired together): a toggle made
through another process is seen within :data:`KEPT` seconds. The workers check the state again
when they plan a task (:func:`engine.store.tasks.start`), so a request that slipped through in
that window ends as a Failed task saying why, never as a sync of the connection.

A read overlapping a change must not undo it: a notification (or a toggle of this process)
arriving while a read is in flight is applied to the read's answer too, and a read during which
the listener came or went is not trusted beyond the requests that waited for it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol

import asyncpg

from engine.store import connection_states

KEPT = 2.0
"""Seconds a process keeps the inactive set before reading it again while not listening."""


class Notifications(Protocol):
    """Where notifications come from: :class:`engine.store.listener.Listener`."""

    def listen(
        self,
        channel: str,
        notified: Callable[[str], None],
        *,
        lost: Callable[[], None] = ...,
        listening: Callable[[], None] = ...,
    ) -> None: ...


class ActiveConnections:
    """The inactive set, kept per process: up to date by notification, or :data:`KEPT`
    seconds while the listener is down."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        kept: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._kept = KEPT if kept is None else kept
        self._clock = clock
        self._inactive: frozenset[int] = frozenset()
        self._until = 0.0
        self._reading: asyncio.Future[frozenset[int]] | None = None
        self._listening = False
        # Bumped whenever a read in flight can no longer be trusted to stay valid: the listener
        # came or went, or a notification said to read everything again.
        self._epoch = 0
        # The changes seen while a read is in flight, applied to its answer (None: no read).
        self._during_read: dict[int, bool] | None = None

    def follow(self, listener: Notifications) -> None:
        """Keep the set up to date from ``listener`` (before it starts)."""
        listener.listen(
            connection_states.CHANNEL,
            self._notified,
            lost=self._listener_lost,
            listening=self._listener_up,
        )

    @property
    def listening(self) -> bool:
        """Changes arrive by notification (otherwise the set is read every :data:`KEPT` s)."""
        return self._listening

    async def inactive(self) -> frozenset[int]:
        """The inactive connection ids (kept in memory: see the module)."""
        if self._clock() < self._until:
            return self._inactive
        if self._reading is None:  # the first caller reads; the others wait for its answer
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        return await asyncio.shield(reading)

    async def is_active(self, connection_id: int) -> bool:
        return connection_id not in await self.inactive()

    async def _read(self) -> frozenset[int]:
        epoch, listening = self._epoch, self._listening
        self._during_read = {}
        try:
            found = await connection_states.inactive(self._pool())
            # Changes notified meanwhile are at least as new as the read (they come in commit
            # order, and one the read already saw is applied twice, to the same effect).
            found = _applied(found, self._during_read)
            if epoch != self._epoch:
                until = 0.0  # the listener came or went, or a truncate: read again next time
            elif listening:
                until = math.inf
            else:
                until = self._clock() + self._kept
            self._inactive, self._until = found, until
            return found
        finally:
            self._reading = None
            self._during_read = None

    def changed(self, connection_id: int, active: bool) -> None:
        """This process toggled a connection: its own requests see it at once (before the
        notification arrives, or without one while the listener is down)."""
        self._apply(connection_id, active)
        if self._listening:
            # A later toggle through another process may have been notified before this call:
            # applying ours now would undo it for good. One read (by the next request) after
            # our commit settles it; notifications from then on are newer.
            self._invalidate()

    def _apply(self, connection_id: int, active: bool) -> None:
        self._inactive = _applied(self._inactive, {connection_id: active})
        if self._during_read is not None:
            self._during_read[connection_id] = active

    def _notified(self, payload: str) -> None:
        state = connection_states.notified(payload)
        if state is None:  # a truncate (or a payload this version cannot read): read it all
            self._invalidate()
            return
        self._apply(state.connection_id, state.active)

    def _listener_up(self) -> None:
        # What is kept may predate changes notified while nobody listened: read it once now
        # (by the next request), then trust notifications.
        self._listening = True
        self._invalidate()

    def _listener_lost(self) -> None:
        self._listening = False
        self._epoch += 1
        self._until = min(self._until, self._clock() + self._kept)

    def _invalidate(self) -> None:
        self._epoch += 1
        self._until = 0.0


def _applied(inactive: frozenset[int], changes: dict[int, bool]) -> frozenset[int]:
    if not changes:
        return inactive
    now_active = {cid for cid, active in changes.items() if active}
    now_inactive = {cid for cid, active in changes.items() if not active}
    return (inactive - now_active) | now_inactive
