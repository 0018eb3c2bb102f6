"""Task creation for ForceResyncBatchTask: the one way the front door inserts a task.

Without an ``Idempotency-Key`` the row goes in with those of concurrent requests (one INSERT and
one commit per batch, :class:`~engine.store.task_batch.TaskBatcher`), or on its own when batching
is off. With a key (:mod:`engine.api.idempotency`) the key is claimed and the task created in
one transaction; a retry with the same key waits for the first request and replays its task id,
or, when the first request's process died while queueing, takes the claim over and queues the
stored task again with its original message id (the engine runs a message id once).

The keyed path is :meth:`TaskIntake.claim`, for any request that creates one task and publishes
one command (:class:`Keyed`): ForceResyncBatchTask and the synchronous ForceResync* through
:meth:`TaskIntake.create`, RetryFailed (:mod:`engine.api.followups`) with its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import asyncpg

from engine.api import idempotency
from engine.api.bodies import ResyncRequest
from engine.api.errors import ApiError
from engine.messaging.commands import ResyncCommand, new_message_id
from engine.store import Executor, tasks
from engine.store import idempotency as keys
from engine.store.task_batch import BatcherClosed, TaskBatcher

_POLL = 0.05

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


@dataclass(frozen=True, slots=True)
class TaskOf(Generic[C]):
    """A created (or found) task and what is left to do for it."""

    task_id: int
    publish: C | None
    """The command to publish, or None when it was queued before (an Idempotency-Key replay)."""
    message_id: str = ""
    """The message id to publish it with."""
    replay: bool = False
    """An Idempotency-Key whose request is done: nothing to publish or to complete."""


NewTask = TaskOf[ResyncRequest]
"""A ForceResyncBatchTask's (or ForceResync*'s) task."""


class Keyed(Protocol[C_co]):
    """A request that creates one task and publishes one command, as an Idempotency-Key claims
    it (:meth:`TaskIntake.claim`)."""

    @property
    def command(self) -> C_co:
        """What to publish for the task this request creates."""
        ...

    def fingerprint(self) -> bytes:
        """The request's identity: a retry with the same key must have the same one, and any
        other request (of any endpoint) a different one."""
        ...

    async def insert(self, conn: Executor, message_id: str) -> int:
        """Insert the request's task (in the claim's transaction); its id."""
        ...

    def restored(self, task: asyncpg.Record) -> C_co:
        """The command of the stored (``New``) task, to publish again after a takeover."""
        ...


@dataclass(frozen=True, slots=True)
class _Resync:
    """ForceResyncBatchTask's (and ForceResync*'s) keyed request."""

    command: ResyncRequest
    name: str

    def fingerprint(self) -> bytes:
        return idempotency.fingerprint(self.command)

    async def insert(self, conn: Executor, message_id: str) -> int:
        return await TaskIntake._insert(conn, self.command, message_id, self.name)

    def restored(self, task: asyncpg.Record) -> ResyncRequest:
        command = ResyncCommand.model_validate(task["request"])
        return ResyncRequest(
            command.erp_connection_id, command.internal_key_ids, bool(command.no_blank_values)
        )


class TaskIntake:
    """Creates the tasks of ForceResyncBatchTask requests, and claims the Idempotency-Key of
    any request that creates a task (:meth:`claim`)."""

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
        """Create the task; the body publishes :attr:`TaskOf.publish` when it is set.

        With an Idempotency-Key: :meth:`claim`.
        """
        if key is None:
            yield await self._create(resync, name)
            return
        async with self.claim(_Resync(resync, name), principal=principal, key=key) as task:
            yield task

    @contextlib.asynccontextmanager
    async def claim(
        self, request: Keyed[C], *, principal: str, key: str
    ) -> AsyncIterator[TaskOf[C]]:
        """Claim the Idempotency-Key ``key`` of ``principal`` for ``request`` and create its
        task, or find the task an earlier request with this key made (a replay: nothing to
        publish). The body publishes :attr:`TaskOf.publish` when it is set.

        The key is done once the body completes, and released when it raises (the command was
        not queued), so that a retry runs. 400 for a malformed key, 422 when the key was used
        with another request, 409 while the first request with it is still being processed.
        """
        key = idempotency.validate_key(key)
        task = await self._claim_or_find(request, principal, key)
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
            return TaskOf(task_id, resync, message_id)
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
        return TaskOf(task_id, resync, message_id)

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

    async def _claim_or_find(self, request: Keyed[C], principal: str, key: str) -> TaskOf[C]:
        """Claim the key and create its task, or find the task an earlier request made."""
        request_hash = request.fingerprint()
        deadline = time.monotonic() + self.wait_seconds
        while True:
            message_id = new_message_id()
            # Claim and create in one transaction (one commit); a concurrent claim of the same
            # key waits on the unique index until this commits.
            async with self.pool.acquire() as conn, conn.transaction():
                if await keys.claim(conn, principal, key, request_hash):
                    task_id = await request.insert(conn, message_id)
                    await keys.set_task(conn, principal, key, task_id)
                    return TaskOf(task_id, request.command, message_id)
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
                return TaskOf(row.task_id, None, replay=True)
            taken = await keys.take_over(
                self.pool, principal, key, request_hash, self.stale_seconds
            )
            if taken is not None:  # the first request's process died while queueing
                if taken.task_id is None:  # its task was deleted meanwhile: start over
                    await keys.release(self.pool, principal, key)
                    continue
                return await self._stored(request, taken.task_id)
            if time.monotonic() > deadline:
                raise ApiError(
                    409,
                    f"A request with this {idempotency.HEADER} is still being processed; "
                    "retry shortly",
                    "ConflictException",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(_POLL)

    async def _stored(self, request: Keyed[C], task_id: int) -> TaskOf[C]:
        """A taken-over task: its stored command, to publish again unless it got through."""
        task = await tasks.get(self.pool, task_id)
        if task is None or task["state"] != "New":
            # The first publish did get through (or the task is gone): nothing to queue.
            return TaskOf(task_id, None)
        return TaskOf(task_id, request.restored(task), task["message_id"])


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
