"""RabbitMQ names and declarations: one direct exchange, quorum queues, a dead-letter queue.

Work queues are durable quorum queues with an explicit ``x-delivery-limit`` (RabbitMQ 3.10 has
no default: a poison message would loop forever) and a dead-letter exchange. Dead-lettering uses
the quorum queues' ``at-least-once`` strategy, which RabbitMQ only honours together with
``x-overflow = reject-publish``; the default strategy republishes without confirms and could drop
a message on its way to the dead-letter queue.

Queue arguments cannot change after a queue exists: redeclaring with other arguments fails with
PRECONDITION_FAILED (``inequivalent arg``). Changing them means draining and deleting the queues
(or using a new ``broker.prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

RESYNC_ROUTING_KEY = "resync"
CHUNK_ROUTING_KEY = "resync.chunk"
REASON_HEADER = "x-erpsync-reason"
ORIGINAL_ROUTING_KEY_HEADER = "x-erpsync-original-routing-key"
DEAD_LETTERED_AT_HEADER = "x-erpsync-dead-lettered-at"
REPLAY_COUNT_HEADER = "x-erpsync-replay-count"


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
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def chunks(self) -> str:
        return f"{self.prefix}.chunks"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dead-letters"


@dataclass(frozen=True, slots=True)
class Topology:
    """Declared objects (kept referenced: aio-pika re-declares them on reconnect)."""

    exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    commands: AbstractQueue
    chunks: AbstractQueue
    dead_letters: AbstractQueue


async def declare(channel: AbstractChannel, names: Names, delivery_limit: int) -> Topology:
    """Declare everything (idempotent): durable quorum queues with a delivery limit and DLX."""
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
    work_args: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": names.dead_letter_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    commands = await channel.declare_queue(names.commands, durable=True, arguments=work_args)
    await commands.bind(exchange, RESYNC_ROUTING_KEY)
    chunks = await channel.declare_queue(names.chunks, durable=True, arguments=work_args)
    await chunks.bind(exchange, CHUNK_ROUTING_KEY)
    return Topology(exchange, dlx, commands, chunks, dead)
