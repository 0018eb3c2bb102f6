"""Waiting for a task to reach a final state: PostgreSQL LISTEN, with a polling fallback.

Migration 0008 makes every change of a task to a final state notify channel
``erpsync_task_finished`` with the task id, whatever statement made it. One
:class:`TaskWaiter` per process listens on the process's LISTEN connection
(:class:`~engine.store.listener.Listener`) and wakes the waiters of that task. A notification
can be missed (the listening connection dropped, a restart), so each waiter also reads the task
every ``poll_interval`` seconds; the listener reconnects in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg

from engine.store import Executor, tasks
from engine.store.listener import Listener

CHANNEL = "erpsync_task_finished"


class TaskWaiter:
    """Waits for tasks to finish; one per process, shared by all requests."""

    def __init__(self, listener: Listener, pool: Executor, *, poll_interval: float = 1.0) -> None:
        self._pool = pool
        self.poll_interval = poll_interval
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._everything: set[asyncio.Event] = set()
        listener.listen(CHANNEL, self._notified, listening=self._wake_everybody)

    def _notified(self, payload: str) -> None:
        try:
            task_id = int(payload)
        except ValueError:
            return
        for event in self._waiters.get(task_id, ()):
            event.set()
        for event in self._everything:
            event.set()

    def _wake_everybody(self) -> None:
        # Listening (again): waiters re-read their task, a notification may have been missed.
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
