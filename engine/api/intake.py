"""Task creation for ForceResyncBatchTask: the one way the front door inserts a task.

Without an ``Idempotency-Key`` the row goes in with those of concurrent requests (one INSERT and
one commit per batch, :class:`~engine.store.task_batch.TaskBatcher`), or on its own when batching
is off. With a key (:mod:`engine.api.idempotency`) the key is claimed and the task created in
one transaction; a retry with the same key waits for the first request and replays its task id,
or, when the first request's process died while queueing, takes the claim over and queues the
stored task again with its original message id (the engine runs a message id once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.api import idempotency
from engine.api.bodies import ResyncRequest
from engine.api.errors import ApiError
from engine.messaging.commands import ResyncCommand, new_message_id
from engine.store import Executor, tasks
from engine.store import idempotency as keys
from engine.store.task_batch import BatcherClosed, TaskBatcher

_POLL = 0.05


@dataclass(frozen=True, slots=True)
class NewTask:
    """A created (or found) task and what is left to do for it."""

    task_id: int
    publish: ResyncRequest | None
    """The command to publish, or None when it was queued before (an Idempotency-Key replay)."""
    message_id: str = ""
    """The message id to publish it with."""
    replay: bool = False
    """An Idempotency-Key whose request is done: nothing to publish or to complete."""


class TaskIntake:
    """Creates the tasks of ForceResyncBatchTask requests."""

    def __init__(
        self, pool: asyncpg.Pool, batcher: TaskBatcher | None, *, publish_timeout: float
    ) -> None:
        self.pool = pool
        self.batcher = batcher
        self.wait_seconds = publish_timeout + 2
        self.stale_seconds = 2 * publish_timeout + 30

    @contextlib.asynccontextmanager
    async def create(
        self,
        resync: ResyncRequest,
        *,
        principal: str,
        key: str | None,
        name: str = tasks.RESYNC_TASK_NAME,
    ) -> AsyncIterator[NewTask]:
        """Create the task; the body publishes :attr:`NewTask.publish` when it is set.

        With an Idempotency-Key the key is done once the body completes, and released when it
        raises (the command was not queued), so that a retry runs.
        """
        if key is None:
            yield await self._create(resync, name)
            return
        key = idempotency.validate_key(key)
        task = await self._claim_or_find(resync, principal, key, name)
        if task.replay:
            yield task
            return
        try:
            yield task
        except BaseException:
            await asyncio.shield(keys.release(self.pool, principal, key))
            raise
        await keys.complete(self.pool, principal, key)

    async def _create(self, resync: ResyncRequest, name: str = tasks.RESYNC_TASK_NAME) -> NewTask:
        message_id = new_message_id()
        if self.batcher is None:
            task_id = await self._insert(self.pool, resync, message_id, name)
            return NewTask(task_id, resync, message_id)
        try:
            task_id = await self.batcher.create(
                source_connection_id=resync.source_connection_id,
                request=_stored_request(resync),
                message_id=message_id,
                name=name,
            )
        except BatcherClosed:
            raise ApiError(
                503, "The service is shutting down; retry later.", headers={"Retry-After": "5"}
            ) from None
        return NewTask(task_id, resync, message_id)

    create_unkeyed = _create
    """What :meth:`create` does for ``key=None``, without its context manager (an async
    generator per request costs ~3% of a busy front door's CPU): the task, always to publish."""

    @staticmethod
    async def _insert(
        conn: Executor, resync: ResyncRequest, message_id: str, name: str = tasks.RESYNC_TASK_NAME
    ) -> int:
        return await tasks.create(
            conn,
            source_connection_id=resync.source_connection_id,
            request=_stored_request(resync),
            message_id=message_id,
            name=name,
        )

    async def _claim_or_find(
        self, resync: ResyncRequest, principal: str, key: str, name: str
    ) -> NewTask:
        """Claim the key and create its task, or find the task an earlier request made."""
        request_hash = idempotency.fingerprint(resync)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            message_id = new_message_id()
            # Claim and create in one transaction (one commit); a concurrent claim of the same
            # key waits on the unique index until this commits.
            async with self.pool.acquire() as conn, conn.transaction():
                if await keys.claim(conn, principal, key, request_hash):
                    task_id = await self._insert(conn, resync, message_id, name)
                    await keys.set_task(conn, principal, key, task_id)
                    return NewTask(task_id, resync, message_id)
            row = await keys.get(self.pool, principal, key)
            if row is None:
                continue  # released between our claim and our read: claim again
            if not hmac.compare_digest(row.request_hash, request_hash):
                raise ApiError(
                    422,
                    f"{idempotency.HEADER} was already used with a different request",
                    "IdempotencyException",
                )
            if row.state == "done":
                if row.task_id is None:
                    raise ApiError(422, f"The task of this {idempotency.HEADER} no longer exists")
                return NewTask(row.task_id, None, replay=True)
            taken = await keys.take_over(
                self.pool, principal, key, request_hash, self.stale_seconds
            )
            if taken is not None:  # the first request's process died while queueing
                if taken.task_id is None:  # its task was deleted meanwhile: start over
                    await keys.release(self.pool, principal, key)
                    continue
                return await self._stored(taken.task_id)
            if time.monotonic() > deadline:
                raise ApiError(
                    409,
                    f"A request with this {idempotency.HEADER} is still being processed; "
                    "retry shortly",
                    "ConflictException",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(_POLL)

    async def _stored(self, task_id: int) -> NewTask:
        """A taken-over task: its stored command, to publish again unless it got through."""
        task = await tasks.get(self.pool, task_id)
        if task is None or task["state"] != "New":
            # The first publish did get through (or the task is gone): nothing to queue.
            return NewTask(task_id, None)
        command = ResyncCommand.model_validate(task["request"])
        resync = ResyncRequest(
            command.erp_connection_id, command.internal_key_ids, bool(command.no_blank_values)
        )
        return NewTask(task_id, resync, task["message_id"])


def _stored_request(resync: ResyncRequest) -> dict[str, Any]:
    """The task's ``Request``: the arguments as a SuperOffice client would send them
    (``NoBlankValues`` only when set; the chunk runs read it from here)."""
    request: dict[str, Any] = {
        "ErpConnectionId": resync.erp_connection_id,
        "InternalKeyIds": list(resync.internal_key_ids),
    }
    if resync.no_blank_values:
        request["NoBlankValues"] = True
    return request
