"""Periodic sweep in every engine process: publish due delayed retries, restart stale tasks.

Delayed retries live in PostgreSQL (``task_chunks`` with ``not_before``), so a retry never holds
a delivery and the budget is visible in SQL. A Started task whose heartbeat is older than
``stale_after`` while it still has runnable work lost its messages or its worker: the sweeper
counts a restart and publishes the work again (the command when planning was not finished, else
its pending chunks). Duplicates this may cause are harmless: chunks commit once. A task whose
work is routed to a queue with a backlog is waiting, not stale, and is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import asyncpg
import structlog

from engine.messaging.broker import Publisher
from engine.messaging.commands import ResyncCommand
from engine.messaging.publishing import small_lane
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.settings import Settings
from engine.store import events, recovery, results, tasks
from engine.store.recovery import StaleTask
from engine.sync.background import cancel_until_done

log = structlog.get_logger(__name__)

_BATCH = 100
HOUSEKEEPING_INTERVAL = 3600.0
PROCESSED_MESSAGES_KEPT = 7 * 24 * 3600.0
"""Handled command ids are kept a week: far longer than a task runs (see
:func:`engine.store.results.purge_processed`)."""


class Sweeper:
    """Runs :meth:`sweep` every ``engine.sweep_interval`` seconds until stopped."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, publisher: Publisher, worker: str = "sweeper"
    ) -> None:
        """``worker``: this process's worker id (recorded as taking over a dead one's chunks)."""
        self.settings = settings
        self.pool = pool
        self.publisher = publisher
        self.worker = worker
        self._housekept = -HOUSEKEEPING_INTERVAL
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="erpsync-sweeper")

    async def stop(self) -> None:
        self._stopping = True
        await cancel_until_done(self._loop)

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.engine.sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:  # broker or database away: next sweep tries again
                log.warning("sweep failed", error=f"{type(exc).__name__}: {exc}")

    async def sweep(self) -> tuple[int, int]:
        """One pass; returns (delayed retries published, stale tasks restarted)."""
        await self.take_over_orphaned_chunks()
        if time.monotonic() - self._housekept >= HOUSEKEEPING_INTERVAL:
            await self.housekeeping()
        return await self.publish_due_retries(), await self.restart_stale_tasks()

    async def housekeeping(self) -> None:
        """Forget what only grows: leases of workers long dead, old handled message ids, sent
        task.finished events and settled webhook deliveries past their retention (after giving
        up those of webhooks no longer configured that no worker took for an hour)."""
        self._housekept = time.monotonic()
        stale_after = self.settings.engine.stale_after
        await recovery.drop_stale_leases(self.pool, max(HOUSEKEEPING_INTERVAL, 10 * stale_after))
        purged = await results.purge_processed(self.pool, PROCESSED_MESSAGES_KEPT)
        if purged:
            log.info("old handled message ids forgotten", count=purged)
        kept = self.settings.notifications
        configured = [hook.name for hook in kept.webhooks]
        orphaned = await events.give_up_unconfigured(self.pool, configured, HOUSEKEEPING_INTERVAL)
        for webhook, count in sorted(orphaned.items()):
            log.warning(
                "webhook deliveries given up: the webhook is no longer configured",
                webhook=webhook,
                count=count,
            )
        # Deliveries first: an event waits for its undelivered ones (resend needs its body).
        deliveries = await events.purge_finished_deliveries(self.pool, kept.deliveries_kept)
        sent = await events.purge_sent_events(self.pool, kept.events_kept)
        if deliveries or sent:
            log.info("old task.finished events forgotten", events=sent, deliveries=deliveries)

    async def take_over_orphaned_chunks(self) -> int:
        """Publish again the pending chunks of workers whose lease ran out (dead or frozen)."""
        stale_after = self.settings.engine.stale_after
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                orphans = await recovery.release_orphaned_chunks(
                    conn, stale_after, _BATCH, self.worker
                )
            for task_id, dead in sorted({(o[0], o[3]) for o in orphans}):
                if await recovery.record_takeover(conn, task_id, dead, self.worker):
                    log.warning(
                        "taking over the chunks of a worker whose lease ran out",
                        task_id=task_id,
                        dead_worker=dead,
                    )
        small = await self._small_tasks(o[0] for o in orphans)
        for task_id, chunk_no, target, _ in orphans:
            with small_lane(task_id in small):
                await self.publisher.publish_chunk(task_id, chunk_no, target)
        return len(orphans)

    async def _small_tasks(self, task_ids: Iterable[int]) -> set[int]:
        """Which of ``task_ids`` run in the small-task lane (their chunks are published there)."""
        ids = sorted(set(task_ids))
        most = self.settings.engine.small_task_records
        if not ids or not most:
            return set()
        async with self.pool.acquire() as conn:
            return await tasks.small_ones(conn, ids, most)

    async def publish_due_retries(self) -> int:
        published = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                due = await recovery.claim_due_retries(conn, _BATCH)
            small = await self._small_tasks(task_id for task_id, _, _ in due)
            for i, (task_id, chunk_no, target) in enumerate(due):
                try:
                    with small_lane(task_id in small):
                        await self.publisher.publish_chunk(task_id, chunk_no, target)
                except BaseException:
                    # This one and the rest of the batch were claimed but not published: let
                    # the next sweep try them again (else they would wait for a stale restart).
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._unclaim(due[i:]))
                    raise
                published += 1
            if len(due) < _BATCH:
                return published

    async def _unclaim(self, chunks: list[tuple[int, int, int | None]]) -> None:
        for task_id, chunk_no, _ in chunks:
            await recovery.unclaim_retry(self.pool, task_id, chunk_no)

    async def restart_stale_tasks(self) -> int:
        backlogged = await self.publisher.backlogged()
        async with self.pool.acquire() as conn, conn.transaction():
            stale = await recovery.claim_stale_tasks(
                conn, self.settings.engine.stale_after, 10, backlogged
            )
        for task in stale:
            with structlog.contextvars.bound_contextvars(task_id=task.id):
                await self._restart(task)
        return len(stale)

    async def _restart(self, task: StaleTask) -> None:
        limit = self.settings.engine.max_starts
        if task.start_count > limit or (not task.planned and task.start_count >= limit):
            log.error("task stalled too often; failed", start_count=task.start_count)
            await tasks.fail(
                self.pool, task.id, f"Stalled after {task.start_count} starts; not restarted"
            )
            return
        if not task.planned:
            log.warning("task stalled while planning; command published again")
            request = task.request
            command = ResyncCommand.model_validate({**request, "TaskId": task.id})
            await self.publisher.publish(
                RESYNC_ROUTING_KEY,
                command.to_body(),
                message_id=task.message_id or f"task-{task.id}-restart-{task.start_count}",
            )
            return
        after, count = -1, 0
        small = task.id in await self._small_tasks([task.id])
        while True:
            page = await recovery.due_pending_chunks(self.pool, task.id, after, _BATCH)
            for chunk_no, target in page:  # push units and retries to their target's queue
                with small_lane(small):
                    await self.publisher.publish_chunk(task.id, chunk_no, target)
            chunk_nos = [chunk_no for chunk_no, _ in page]
            await recovery.mark_published(self.pool, task.id, chunk_nos)
            count += len(chunk_nos)
            if len(chunk_nos) < _BATCH:
                break
            after = chunk_nos[-1]
        log.warning("task stalled; pending chunks published again", chunks=count)
