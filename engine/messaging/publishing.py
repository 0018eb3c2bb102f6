"""What the engine needs of a publisher: the :class:`ChunkPublisher` protocol and chunk routing.

Two implementations: :class:`engine.messaging.broker.Publisher` (RabbitMQ, confirmed) and
:class:`engine.messaging.memory.InMemoryPublisher` (a list, for unit tests without a broker).
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

from engine.messaging.commands import ChunkCommand
from engine.messaging.topology import (
    CHUNK_ROUTING_KEY,
    PUBLISHED_AT_HEADER,
    SMALL_ROUTING_KEY,
    push_routing_key,
    small_push_routing_key,
)

_small_lane: ContextVar[bool] = ContextVar("erpsync_small_lane", default=False)


@contextlib.contextmanager
def small_lane(small: bool = True) -> Iterator[None]:
    """Chunks published inside go to the small-task lane (``small``) or to the bulk queues.

    A context rather than an argument, so that ``publish_chunk``'s signature stays as it is:
    the planner sets it for a small task, the consumer for every delivery from the small lane
    (the push units a small chunk stores follow it there), and tasks started inside inherit it.
    """
    token = _small_lane.set(small)
    try:
        yield
    finally:
        _small_lane.reset(token)


def in_small_lane() -> bool:
    """Whether chunks published here go to the small-task lane."""
    return _small_lane.get()


class PublishFailed(Exception):
    """The broker did not confirm the message (unreachable, returned, nacked or too slow)."""


class ChunkPublisher(Protocol):
    """What the planner, the chunk runner and the front door need of a publisher.

    ``publish`` returns the message id once the message is safely queued and raises
    :class:`PublishFailed` when it is not.
    """

    async def publish(self, routing_key: str, body: bytes, *, message_id: str | None = None) -> str:
        """Publish one message."""
        ...

    async def publish_chunk(self, task_id: int, chunk_no: int, target: int | None) -> str:
        """Publish one chunk command to where it runs."""
        ...


class ChunkRouting(abc.ABC):
    """Where chunk commands go: a publisher that implements ``publish`` and sets
    ``push_targets`` gets :meth:`publish_chunk` from here."""

    push_targets: frozenset[int]
    """Target connections with a push queue."""

    @abc.abstractmethod
    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Publish one message; see :class:`ChunkPublisher`."""

    def chunk_routing_key(self, target: int | None) -> str:
        """Where a chunk goes: its target's push queue, or (target None) the chunk queue; those
        of the small-task lane inside :func:`small_lane`.

        A target without a push queue here (a connection removed from the configuration) goes
        to the chunk queue, where the runner reports it, rather than being unroutable forever.
        """
        small = _small_lane.get()
        if target is not None and target in self.push_targets:
            return small_push_routing_key(target) if small else push_routing_key(target)
        return SMALL_ROUTING_KEY if small else CHUNK_ROUTING_KEY

    async def publish_chunk(self, task_id: int, chunk_no: int, target: int | None) -> str:
        """Publish a chunk command (a planned chunk, push unit or delayed retry), stamped with
        the publish time (the consumer measures how long it waited)."""
        return await self.publish(
            self.chunk_routing_key(target),
            ChunkCommand.model_validate({"TaskId": task_id, "ChunkNo": chunk_no}).to_body(),
            message_id=f"chunk-{task_id}-{chunk_no}",
            headers={PUBLISHED_AT_HEADER: int(time.time() * 1000)},
        )
