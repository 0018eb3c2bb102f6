"""RabbitMQ names and declarations: one direct exchange, quorum queues, a dead-letter queue.

Work queues are durable quorum queues with an explicit ``x-delivery-limit`` (RabbitMQ 3.10 has
no default: a poison message would loop forever) and a dead-letter exchange. Dead-lettering uses
the quorum queues' ``at-least-once`` strategy, which RabbitMQ only honours together with
``x-overflow = reject-publish``; the default strategy republishes without confirms and could drop
a message on its way to the dead-letter queue.

Chunks are two-stage (docs/engine.md): planned chunks and whole-record retries go to the shared
``<prefix>.chunks`` queue; the push units of one target connection (and that target's delayed
retries) go to that target's own queue ``<prefix>.push.<connection id>``, which every worker
consumes on a channel of its own with its own prefetch. A slow target's backlog then waits in
the broker, not in the prefetch shared with the other targets.

Small tasks (``engine.small_task_records``) have a lane of their own: their planned chunks go to
``<prefix>.small`` and their push units to ``<prefix>.small.push.<connection id>``, each consumed
by every worker on a channel of its own with its own prefetch, so they never queue behind a large
task's chunks (and a slow target's small units hold back no other target's). Quorum queues have
no message priorities in RabbitMQ 3.10 (``x-max-priority`` is a classic-queue argument), hence
queues of their own.

Queue arguments cannot change after a queue exists: redeclaring with other arguments fails with
PRECONDITION_FAILED (``inequivalent arg``). Changing them means draining and deleting the queues
(or using a new ``broker.prefix``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

RESYNC_ROUTING_KEY = "resync"
CHUNK_ROUTING_KEY = "resync.chunk"
SMALL_ROUTING_KEY = "resync.small"
SMALL_PUSH_ROUTING_KEY_PREFIX = "resync.small.push."
PUSH_ROUTING_KEY_PREFIX = "resync.push."
REASON_HEADER = "x-erpsync-reason"
ORIGINAL_ROUTING_KEY_HEADER = "x-erpsync-original-routing-key"
DEAD_LETTERED_AT_HEADER = "x-erpsync-dead-lettered-at"
REPLAY_COUNT_HEADER = "x-erpsync-replay-count"
TASK_FINISHED_ROUTING_KEY = "task.finished"
"""Routing key of the task.finished event on the events exchange (docs/messages.md)."""
PUBLISHED_AT_HEADER = "x-erpsync-published-ms"
"""Chunk commands: when they were published (Unix time, ms), for the wait-before-start metric."""


@dataclass(frozen=True, slots=True)
class Names:
    """Exchange and queue names derived from the configured prefix."""

    prefix: str

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def events(self) -> str:
        """The topic exchange of erpsync's events (task.finished); consumers bind queues."""
        return f"{self.prefix}.events"

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def chunks(self) -> str:
        return f"{self.prefix}.chunks"

    @property
    def small(self) -> str:
        """The small-task lane's planned chunks (tasks of few records)."""
        return f"{self.prefix}.small"

    def small_push(self, connection_id: int) -> str:
        """The small-task lane's push units of one target connection."""
        return f"{self.prefix}.small.push.{connection_id}"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dead-letters"

    def push(self, connection_id: int) -> str:
        """The queue of one target connection's push units."""
        return f"{self.prefix}.push.{connection_id}"


def push_routing_key(connection_id: int) -> str:
    """Routing key of the push units (and delayed retries) of one target connection."""
    return f"{PUSH_ROUTING_KEY_PREFIX}{connection_id}"


def small_push_routing_key(connection_id: int) -> str:
    """Routing key of the small-task lane's push units of one target connection."""
    return f"{SMALL_PUSH_ROUTING_KEY_PREFIX}{connection_id}"


@dataclass(frozen=True, slots=True)
class Topology:
    """Declared objects (kept referenced: aio-pika re-declares them on reconnect)."""

    exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    commands: AbstractQueue
    chunks: AbstractQueue
    dead_letters: AbstractQueue
    push: dict[int, AbstractQueue] = field(default_factory=dict)
    """Per target connection id, its push queue."""
    events: AbstractExchange | None = None
    small: AbstractQueue | None = None
    """The small-task lane's chunk queue."""
    small_push: dict[int, AbstractQueue] = field(default_factory=dict)
    """Per target connection id, its push queue in the small-task lane."""


def work_queue_arguments(names: Names, delivery_limit: int) -> dict[str, Any]:
    """Arguments of every work queue (commands, chunks, push queues)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": names.dead_letter_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_push_queue(
    channel: AbstractChannel,
    names: Names,
    delivery_limit: int,
    connection_id: int,
    *,
    small: bool = False,
) -> AbstractQueue:
    """Declare and bind one target's push queue, of the small-task lane when ``small`` (the
    exchange must exist)."""
    queue = await channel.declare_queue(
        names.small_push(connection_id) if small else names.push(connection_id),
        durable=True,
        arguments=work_queue_arguments(names, delivery_limit),
    )
    key = small_push_routing_key(connection_id) if small else push_routing_key(connection_id)
    await queue.bind(names.exchange, key)
    return queue


async def declare_small_queue(
    channel: AbstractChannel, names: Names, delivery_limit: int
) -> AbstractQueue:
    """Declare and bind the small-task lane's queue (the exchange must exist)."""
    queue = await channel.declare_queue(
        names.small, durable=True, arguments=work_queue_arguments(names, delivery_limit)
    )
    await queue.bind(names.exchange, SMALL_ROUTING_KEY)
    return queue


async def declare(
    channel: AbstractChannel,
    names: Names,
    delivery_limit: int,
    push_targets: Sequence[int] = (),
) -> Topology:
    """Declare everything (idempotent): durable quorum queues with a delivery limit and DLX.

    ``push_targets``: the target connections whose push queues to declare too.
    """
    exchange = await channel.declare_exchange(
        names.exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlx = await channel.declare_exchange(
        names.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead = await channel.declare_queue(
        names.dead_letters, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(dlx)
    work_args = work_queue_arguments(names, delivery_limit)
    commands = await channel.declare_queue(names.commands, durable=True, arguments=work_args)
    await commands.bind(exchange, RESYNC_ROUTING_KEY)
    chunks = await channel.declare_queue(names.chunks, durable=True, arguments=work_args)
    await chunks.bind(exchange, CHUNK_ROUTING_KEY)
    push = {
        target: await declare_push_queue(channel, names, delivery_limit, target)
        for target in push_targets
    }
    events = await channel.declare_exchange(names.events, aio_pika.ExchangeType.TOPIC, durable=True)
    small = await declare_small_queue(channel, names, delivery_limit)
    small_push = {
        target: await declare_push_queue(channel, names, delivery_limit, target, small=True)
        for target in push_targets
    }
    return Topology(exchange, dlx, commands, chunks, dead, push, events, small, small_push)
