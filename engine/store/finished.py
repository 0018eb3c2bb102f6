"""Waiting for a task to reach a final state: PostgreSQL LISTEN, with a polling fallback.

Migration 0008 makes every change of a task to a final state notify channel
``erpsync_task_finished`` with the task id, whatever statement made it. One
:class:`TaskWaiter` per process listens on a dedicated connection (never a pool connection: the
pool releases connections without ``UNLISTEN``) and wakes the waiters of that task. A
notification can be missed (the listening connection dropped, a restart), so each waiter also
reads the task every ``poll_interval`` seconds; the listener reconnects in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
import structlog

from engine.settings import DatabaseSettings
from engine.store import Connection, Executor, tasks

log = structlog.get_logger(__name__)

CHANNEL = "erpsync_task_finished"


class TaskWaiter:
    """Waits for tasks to finish; one per process, shared by all requests."""

    def __init__(
        self, settings: DatabaseSettings, pool: Executor, *, poll_interval: float = 1.0
    ) -> None:
        self._settings = settings
        self._pool = pool
        self.poll_interval = poll_interval
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._everything: set[asyncio.Event] = set()
        self._conn: asyncpg.Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        """The LISTEN connection is up (otherwise waiters rely on polling)."""
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Listen now; when that fails, keep trying in the background (polling meanwhile)."""
        try:
            await self._listen()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("task-finished listener not connected; polling", error=str(exc))
            self._schedule_reconnect()

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._settings.url.get_secret_value(), timeout=self._settings.connect_timeout
        )
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn

    def _notified(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        try:
            task_id = int(str(payload))
        except ValueError:
            return
        for event in self._waiters.get(task_id, ()):
            event.set()
        for event in self._everything:
            event.set()

    def _terminated(self, _conn: object) -> None:
        self._conn = None
        if not self._closed:
            log.warning("task-finished listener lost its connection; reconnecting")
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.create_task(self._reconnect_loop(), name="erpsync-listen")

    async def _reconnect_loop(self) -> None:
        delay = 0.5
        while not self._closed and not self.listening:
            await asyncio.sleep(delay)
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.debug("task-finished listener still not connected", error=str(exc))
                delay = min(delay * 2, 10.0)
            else:
                # Waiters woken now re-read their task: a notification may have been missed.
                for events in (*self._waiters.values(), self._everything):
                    for event in events:
                        event.set()

    @contextlib.contextmanager
    def watch(self, task_id: int) -> Iterator[asyncio.Event]:
        """Register interest in ``task_id`` *before* its command is published, so a task that
        finishes at once is not missed; the event is set by its notification."""
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiters.get(task_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[task_id]

    def every_task(self) -> asyncio.Event:
        """An event set whenever any task finishes (and after the listener reconnects, when
        one may have been missed): what the task.finished relay wakes on. Hand it back with
        :meth:`forget` when done."""
        event = asyncio.Event()
        self._everything.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        """Stop setting an event of :meth:`every_task`."""
        self._everything.discard(event)

    async def wait(
        self, task_id: int, event: asyncio.Event, timeout: float
    ) -> asyncpg.Record | None:
        """The task once it is final, or None when ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event.clear()  # before the read: a notification during it is not lost
            task = await tasks.get(self._pool, task_id)
            if task is not None and task["state"] in tasks.TERMINAL_STATES:
                return task
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, self.poll_interval))
