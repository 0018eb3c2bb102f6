"""What the engine needs of a publisher: the :class:`ChunkPublisher` protocol and chunk routing.

Two implementations: :class:`engine.messaging.broker.Publisher` (RabbitMQ, confirmed) and
:class:`engine.messaging.memory.InMemoryPublisher` (a list, for unit tests without a broker).
"""

from __future__ import annotations

import abc
from typing import Protocol

from engine.messaging.commands import ChunkCommand
from engine.messaging.topology import CHUNK_ROUTING_KEY, push_routing_key


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
    async def publish(self, routing_key: str, body: bytes, *, message_id: str | None = None) -> str:
        """Publish one message; see :class:`ChunkPublisher`."""

    def chunk_routing_key(self, target: int | None) -> str:
        """Where a chunk goes: its target's push queue, else (target None) the chunk queue.

        A target without a push queue here (a connection removed from the configuration) goes
        to the chunk queue, where the runner reports it, rather than being unroutable forever.
        """
        if target is not None and target in self.push_targets:
            return push_routing_key(target)
        return CHUNK_ROUTING_KEY

    async def publish_chunk(self, task_id: int, chunk_no: int, target: int | None) -> str:
        """Publish a chunk command (a planned chunk, push unit or delayed retry)."""
        return await self.publish(
            self.chunk_routing_key(target),
            ChunkCommand.model_validate({"TaskId": task_id, "ChunkNo": chunk_no}).to_body(),
            message_id=f"chunk-{task_id}-{chunk_no}",
        )
