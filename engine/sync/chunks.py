"""Run one chunk message: resync its keys, then commit everything it did in one transaction."""

from __future__ import annotations

import asyncpg
import structlog

from engine.messaging.commands import ChunkCommand
from engine.observability import metrics
from engine.store import keys as keys_store
from engine.store import results, tasks
from engine.sync.resync import ChunkResult, ChunkResync

log = structlog.get_logger(__name__)


class _AlreadyCommitted(Exception):
    """Another delivery of the same chunk committed first; roll ours back."""


class ChunkRunner:
    """Handles :class:`ChunkCommand` deliveries."""

    def __init__(self, pool: asyncpg.Pool, resync: ChunkResync) -> None:
        self.pool = pool
        self.resync = resync

    async def run(self, command: ChunkCommand) -> None:
        with structlog.contextvars.bound_contextvars(
            task_id=command.task_id, chunk=command.chunk_no
        ):
            chunk = await tasks.get_chunk(self.pool, command.task_id, command.chunk_no)
            task = await tasks.get(self.pool, command.task_id)
            if chunk is None or task is None:
                log.warning("chunk of an unknown task; dropped")
                return
            if chunk["state"] == "done" or task["state"] in tasks.TERMINAL_STATES:
                log.info("chunk already done; duplicate ignored")
                return
            keys, links = await keys_store.load(self.pool, chunk["internal_key_ids"])
            result = await self.resync.run(task["source_connection_id"], keys, links)
            try:
                await self._commit(command, result)
            except _AlreadyCommitted:
                log.info("chunk committed by another delivery; ours rolled back")

    async def _commit(self, command: ChunkCommand, result: ChunkResult) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await tasks.complete_chunk(
                conn, command.task_id, command.chunk_no, result.counts()
            )
            if row is None:
                raise _AlreadyCommitted
            await results.write(conn, command.task_id, result.outcomes, result.changes)
            await keys_store.touch_links(conn, result.touches)
            if result.crm_written:
                await keys_store.touch_internal_keys(
                    conn, result.crm_written, f"task {command.task_id}"
                )
            for link in result.new_links:
                link_id = await keys_store.add_link(
                    conn,
                    link.internal_key_id,
                    link.connection_id,
                    link.erp_actor_type,
                    link.erp_key,
                    link.last_modified,
                )
                if link_id is None:
                    log.warning(
                        "created actor could not be linked (already linked)",
                        internal_key=link.internal_key_id,
                        connection=link.connection_id,
                    )
            if result.configuration_error:
                log.error("connection misconfigured", error=result.configuration_error)
            log.info("chunk committed", records=result.records, changes=len(result.changes))
            if tasks.is_complete(row):
                detail = ""
                if row["writes_failed"]:
                    first = await tasks.first_failures(conn, command.task_id, limit=1)
                    if first:
                        f = first[0]
                        detail = (
                            f"first failure: key {f['internal_key_id']} on connection "
                            f"{f['connection_id']}: {f['error']}"
                        )
                state = await tasks.finish(conn, row, detail)
                log.info("task finished", state=state, response=tasks.summary(row))
        metrics.of(self).chunk_committed(result.outcomes)  # after the commit succeeded
