"""Plan a resync command into chunk messages, resumably and idempotently.

The keys are streamed in id order (keyset pages), each chunk is stored before it is published,
and a redelivered command republishes the chunks not yet done and continues after the last
planned key, so a planner crash loses nothing and plans nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import asyncpg
import orjson
import structlog

from engine.messaging.commands import ResyncCommand
from engine.messaging.publishing import ChunkPublisher, small_lane
from engine.settings import Settings
from engine.store import Connection, recovery, results, tasks
from engine.store import keys as keys_store
from engine.store.incremental import SYNC_TASK_NAME
from engine.store.results import Outcome
from engine.sync.liveness import Presence

log = structlog.get_logger(__name__)

# Chunks stored per round trip and published with their confirms outstanding together: planning
# a million keys must not take one broker round trip per chunk while chunks already run.
PUBLISH_WINDOW = 64


class Planner:
    """Turns a :class:`ResyncCommand` into stored, published chunks."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        publisher: ChunkPublisher,
        presence: Presence | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.publisher = publisher
        self.presence = presence

    async def reject(self, body: bytes, reason: str) -> None:
        """An invalid command is about to be dead-lettered: fail the task it names (created by
        the front door and still New), so nobody waits for it."""
        task_id = named_task(body)
        if task_id is not None:
            await tasks.fail(self.pool, task_id, f"Invalid command (dead-lettered): {reason}")
            log.warning("invalid command; its task failed", task_id=task_id)

    async def plan(self, command: ResyncCommand, message_id: str) -> None:
        async with self.pool.acquire() as conn:
            task_id = command.task_id or await tasks.create(
                conn,
                source_connection_id=command.source_connection_id,
                request=command.as_request(),
                message_id=message_id,
                correlation_id=command.correlation_id,
                target_keys=command.target_keys,
            )
            with structlog.contextvars.bound_contextvars(task_id=task_id):
                async with recovery.planning_lock(conn, task_id):
                    await self._plan_once(conn, task_id, command, message_id)

    async def _plan_once(
        self, conn: Connection, task_id: int, command: ResyncCommand, message_id: str
    ) -> None:
        """Plan unless this message was planned before (checked under the planning lock)."""
        if await results.was_processed(conn, message_id):
            log.info("command already planned; duplicate ignored")
            return
        if self.presence is None:
            await self._plan(conn, task_id, command, message_id)
            return
        with self.presence.working_on(task_id):
            await self._plan(conn, task_id, command, message_id)

    async def _plan(
        self, conn: Connection, task_id: int, command: ResyncCommand, message_id: str
    ) -> None:
        presence = self.presence
        if presence is None:
            task = await tasks.start(conn, task_id)
        else:
            task = await tasks.start(conn, task_id, presence.worker, presence.stale_after)
        if task is None:
            log.info("task already finished; command ignored")
            await results.mark_processed(conn, message_id, task_id)
            return
        source = command.source_connection_id
        if self.settings.connection(source) is None:
            await tasks.fail(conn, task_id, f"Unknown ErpConnectionId {command.erp_connection_id}")
            await results.mark_processed(conn, message_id, task_id)
            return
        # (source_active: read by tasks.start, no extra round trip.) A continuous-sync page
        # still goes through: it was read while the connection was active and the watermark
        # has moved past it, so failing it would lose those changes.
        if not task["source_active"] and task["name"] != SYNC_TASK_NAME:
            name = self.settings.connection(source)
            await tasks.fail(
                conn,
                task_id,
                f"Connection {source} ({name.name if name else '?'}) is inactive: nothing is "
                "synced from it (activate it with ToggleErpConnectionActive, then resync)",
            )
            await results.mark_processed(conn, message_id, task_id)
            log.info("source connection inactive; task failed", source=source)
            return
        log.info("planning", start_count=task["start_count"], source=source)

        # Counted before the first chunk is stored, so a resumed plan has its total already.
        total = task["total_records"]
        if total is None:
            total = await self._count(conn, task_id, command)
        with small_lane(0 < total <= self.settings.engine.small_task_records):
            chunk_no = await self._publish_chunks(conn, task_id, command)

        async with conn.transaction():
            row = await tasks.mark_planned(conn, task_id, chunk_no)
            if tasks.is_complete(row):
                names = {c.id: c.name for c in self.settings.all_connections}
                state, response = await tasks.finish(conn, row, names=names)
                log.info("task finished", state=state, response=response)
            await results.mark_processed(conn, message_id, task_id)
        log.info("planned", chunks=chunk_no)

    async def _publish_chunks(self, conn: Connection, task_id: int, command: ResyncCommand) -> int:
        """Republish the stored chunks not done (a resumed plan), then store and publish the
        rest; returns the number of chunks planned."""
        chunk_no, after = await tasks.planned_extent(conn, task_id)
        if chunk_no:  # resuming: chunks whose message may never have gone out
            await self._republish_pending(conn, task_id)
        window: list[list[int]] = []
        async for chunk_keys in self._key_chunks(conn, command, after):
            window.append(chunk_keys)
            if len(window) >= PUBLISH_WINDOW:
                chunk_no = await self._store_and_publish(conn, task_id, chunk_no, window)
                window = []
        if window:
            chunk_no = await self._store_and_publish(conn, task_id, chunk_no, window)
        return chunk_no

    async def _store_and_publish(
        self, conn: Connection, task_id: int, first: int, window: list[list[int]]
    ) -> int:
        """Store a window of chunks, then publish them with their confirms in flight together.

        Every chunk is stored before its message goes out; should a publish fail, the
        redelivered command finds the stored chunks pending and republishes them.
        """
        await tasks.add_chunks(conn, task_id, first, window)
        numbers = range(first, first + len(window))
        await publish_chunks(self.publisher, task_id, numbers)
        return first + len(window)

    async def _count(self, conn: Connection, task_id: int, command: ResyncCommand) -> int:
        """First planning pass: total records, and an outcome per unknown internal key; the
        total."""
        async with conn.transaction():
            if command.internal_key_ids:
                known = await keys_store.existing(conn, command.internal_key_ids)
                unknown = [i for i in command.internal_key_ids if i not in known]
                await results.write(
                    conn,
                    task_id,
                    [
                        Outcome(i, None, "unknown_key", error="no such internal key")
                        for i in unknown
                    ],
                    [],
                )
                await tasks.set_total(conn, task_id, len(known), len(unknown))
                return len(known)
            total: int = await keys_store.count_linked(conn, command.source_connection_id)
            await tasks.set_total(conn, task_id, total, 0)
            return total

    async def _key_chunks(
        self, conn: Connection, command: ResyncCommand, after: int
    ) -> AsyncIterator[list[int]]:
        size = self.settings.engine.chunk_size
        if command.internal_key_ids:
            known = await keys_store.existing(conn, command.internal_key_ids)
            ordered = sorted(k for k in known if k > after)
            for start in range(0, len(ordered), size):
                yield ordered[start : start + size]
            return
        pending: list[int] = []
        page = max(self.settings.engine.key_page_size, size)
        while True:
            ids = await keys_store.page_linked(conn, command.source_connection_id, after, page)
            if not ids:
                break
            after = ids[-1]
            pending += ids
            while len(pending) >= size:
                yield pending[:size]
                pending = pending[size:]
        if pending:
            yield pending

    async def _republish_pending(self, conn: Connection, task_id: int) -> None:
        after = -1
        while True:
            page = await tasks.pending_planned(
                conn, task_id, after, self.settings.engine.chunk_size
            )
            await publish_chunks(self.publisher, task_id, page)
            if not page:
                return
            after = page[-1]


async def publish_chunks(publisher: ChunkPublisher, task_id: int, numbers: Iterable[int]) -> None:
    """Publish planned chunks to the chunk queue with their confirms outstanding together.

    Raises when one is not confirmed; the chunks are stored, so the redelivered command finds
    them pending and publishes them again.
    """
    await asyncio.gather(*(publisher.publish_chunk(task_id, n, None) for n in numbers))


def named_task(body: bytes) -> int | None:
    """The ``TaskId`` of a command body that may be invalid otherwise (None if it has none)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    for key, value in data.items():
        if str(key).lower() == "taskid" and type(value) is int and 1 <= value < 2**63:
            return value
    return None
