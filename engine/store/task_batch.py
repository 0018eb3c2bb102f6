"""Micro-batched task inserts for the front door: one INSERT and one commit per batch.

Every accepted ForceResyncBatchTask request needs its task row committed before its command is
published. Inserting each row on its own costs a database round trip and a commit (a WAL flush)
per request, and on a CPU-bound front door the socket writes dominate. :class:`TaskBatcher`
gathers the rows of requests that arrive together and writes them with one
``INSERT … SELECT … FROM unnest(…) RETURNING id, message_id``:

* **No added delay.** The first row starts a flush at once; rows arriving while a flush is in
  flight wait for the next one (natural batching: the busier the front door, the bigger the
  batches; an idle one inserts single rows with the latency of a single insert).
* **Bounded.** At most ``max_batch`` rows per statement; the rest go in the next flush.
* **Each request gets its own id**, matched by its unique ``message_id`` (not by the order
  of ``RETURNING``), so ids are never swapped between requests.
* **Errors reach every waiter** of the failed batch (the same exception each request would have
  seen on its own insert: e.g. a lost connection becomes the usual 503).
* **Shutdown** (:meth:`close`): no new rows are accepted, and the rows already queued are still
  written before the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from engine.store import tasks

_COLUMNS = """
INSERT INTO batch_tasks (name, source_connection_id, request, message_id, correlation_id,
                         description)
SELECT t.name, t.source_connection_id, t.request::jsonb, t.message_id, t.correlation_id,
       t.description
FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::text[])
     AS t(name, source_connection_id, request, message_id, correlation_id, description)
"""
INSERT_MANY = _COLUMNS + "RETURNING id, message_id\n"
"""The common case: every message id is new (the front door's are random)."""
INSERT_MANY_KNOWN = _COLUMNS + "ON CONFLICT (message_id) DO NOTHING\nRETURNING id, message_id\n"
"""After a unique violation: the rows whose message id exists already are skipped.

Not the first try: ``ON CONFLICT`` makes every row a speculative insertion. With it, and with
the rows sorted by their ordinality as before, a row of a 10-row batch cost PostgreSQL 29.9 us
of CPU against 26.2 us now (``python -m benchmarks.task_insert --rows 10``)."""
EXISTING = "SELECT id, message_id FROM batch_tasks WHERE message_id = ANY($1::text[])"


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no new rows."""


@dataclass(slots=True)
class _Row:
    name: str
    source_connection_id: int
    request: str  # JSON text, cast to jsonb in the statement
    message_id: str
    correlation_id: str | None
    done: asyncio.Future[int]


class TaskBatcher:
    """Collects task rows from concurrent requests and inserts them in batches."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 256) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._queue: list[_Row] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        """Statements sent so far (for tests and metrics)."""
        self.rows = 0
        """Rows written so far."""

    async def create(
        self,
        *,
        source_connection_id: int,
        request: dict[str, Any],
        message_id: str,
        correlation_id: str | None = None,
        name: str = tasks.RESYNC_TASK_NAME,
    ) -> int:
        """Queue a task row (state New) and wait until its batch is committed; its id.

        Like :func:`engine.store.tasks.create`, an existing ``message_id`` returns that task.
        """
        if self._closed:
            raise BatcherClosed("the front door is shutting down")
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(
            _Row(
                name,
                source_connection_id,
                orjson.dumps(request).decode(),
                message_id,
                correlation_id,
                done,
            )
        )
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all(), name="erpsync-task-batcher")
        return await done

    async def close(self) -> None:
        """Stop taking rows; wait until the queued ones are written (or have failed)."""
        self._closed = True
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                batch = [row for row in batch if not row.done.done()]  # drop cancelled waiters
                if batch:
                    await self._flush(batch)
        finally:
            self._flusher = None
            # Cancelled while rows were queued (the loop is going away): nobody will write them.
            for row in self._queue:
                if not row.done.done():
                    row.done.cancel()
            self._queue.clear()

    async def _flush(self, batch: list[_Row]) -> None:
        try:
            ids = await self._insert(batch)
        except asyncio.CancelledError:
            for row in batch:
                if not row.done.done():
                    row.done.cancel()
            raise
        except Exception as exc:
            for row in batch:
                if not row.done.done():
                    row.done.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(batch)
        for row in batch:
            if not row.done.done():
                row.done.set_result(ids[row.message_id])

    async def _insert(self, batch: list[_Row]) -> dict[str, int]:
        """One statement, one commit; message id -> task id for every row of the batch."""
        columns = (
            [row.name for row in batch],
            [row.source_connection_id for row in batch],
            [row.request for row in batch],
            [row.message_id for row in batch],
            [row.correlation_id for row in batch],
            [tasks.describe_source(row.source_connection_id) for row in batch],
        )
        async with self._pool.acquire() as conn:
            try:
                records = await conn.fetch(INSERT_MANY, *columns)
            except asyncpg.UniqueViolationError:  # a known message id (autocommit: undone)
                records = await conn.fetch(INSERT_MANY_KNOWN, *columns)
            ids = {r["message_id"]: r["id"] for r in records}
            missing = [row.message_id for row in batch if row.message_id not in ids]
            if missing:  # message ids that existed already (a redelivered command)
                ids.update({r["message_id"]: r["id"] for r in await conn.fetch(EXISTING, missing)})
        return ids
