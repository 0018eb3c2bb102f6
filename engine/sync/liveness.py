"""Who this worker is, that it is alive, and which tasks it is working on (heartbeats).

Every ``heartbeat_interval`` a worker renews its lease (``worker_leases``) and refreshes
``heartbeat_at`` of the tasks it is planning or running, so the sweeper only restarts tasks
nobody works on. A worker whose lease is older than ``stale_after`` is dead, so another worker
can tell a dead (or frozen) worker's chunk from a duplicate delivery; a worker that stops cleanly
ends its lease. The lease also says whether the worker runs the continuous sync, which is what
the engine-control endpoints of any process report (not that process's own configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections import Counter
from collections.abc import Iterator

import asyncpg
import structlog

from engine.settings import Settings
from engine.store import recovery

log = structlog.get_logger(__name__)


def new_worker_id() -> str:
    """Host, process id and a random suffix (a restarted process is a new worker)."""
    return f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Presence:
    """This worker's identity, presence connection and heartbeat loop."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        worker: str | None = None,
        *,
        runs_sync: bool = False,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.worker = worker or new_worker_id()
        self.runs_sync = runs_sync
        """This worker runs the continuous sync (its scheduler): recorded in its lease."""
        self._active: Counter[int] = Counter()
        self._loop: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def working_on(self, task_id: int) -> Iterator[None]:
        """Heartbeat ``task_id`` while the block runs."""
        self._active[task_id] += 1
        try:
            yield
        finally:
            self._active[task_id] -= 1
            if self._active[task_id] <= 0:
                del self._active[task_id]

    @property
    def active_tasks(self) -> list[int]:
        return sorted(self._active)

    @property
    def stale_after(self) -> float:
        return self.settings.engine.stale_after

    async def start(self) -> None:
        await recovery.renew_lease(self.pool, self.worker, self.runs_sync)
        self._loop = asyncio.create_task(self._run(), name="erpsync-heartbeat")
        log.info("worker present", worker=self.worker)

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        with contextlib.suppress(Exception):
            await asyncio.wait_for(recovery.end_lease(self.pool, self.worker), timeout=5)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.engine.heartbeat_interval)
            try:
                await self.beat()
            except Exception as exc:  # PostgreSQL away: try again next time
                log.warning("heartbeat failed", error=f"{type(exc).__name__}: {exc}")

    async def beat(self) -> None:
        """Renew the lease and heartbeat the active tasks."""
        await recovery.renew_lease(self.pool, self.worker, self.runs_sync)
        await recovery.heartbeat(self.pool, self.active_tasks)
