"""A queue bound to erpsync's events exchange, read by tests: what task.finished events came."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection, AbstractQueue

from engine.messaging.topology import TASK_FINISHED_ROUTING_KEY, Names
from tests.support.services import AMQP_URL


@dataclass(frozen=True, slots=True)
class Event:
    """One task.finished message as a consumer sees it."""

    message_id: str | None
    correlation_id: str | None
    body: dict[str, Any]


class EventQueue:
    """A durable queue ``<prefix>.test-events`` bound to ``task.finished`` (survives a broker
    restart); :meth:`drain` takes what has arrived. Deleted on exit."""

    def __init__(self, prefix: str, url: str = AMQP_URL) -> None:
        self.names = Names(prefix)
        self.name = f"{prefix}.test-events"
        self.url = url
        self.received: list[Event] = []
        self._connection: AbstractConnection | None = None
        self._queue: AbstractQueue | None = None

    async def __aenter__(self) -> EventQueue:
        await self._open()
        assert self._queue is not None
        exchange = await self._queue.channel.declare_exchange(
            self.names.events, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await self._queue.bind(exchange, TASK_FINISHED_ROUTING_KEY)
        return self

    async def _open(self) -> None:
        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        self._queue = await channel.declare_queue(self.name, durable=True)

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            if self._queue is not None:
                await self._queue.delete(if_unused=False, if_empty=False)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def drain(self) -> list[Event]:
        """Everything received so far (reconnecting when the broker went away)."""
        try:
            await self._take()
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            with contextlib.suppress(Exception):
                if self._connection is not None:
                    await self._connection.close()
            await self._open()
            await self._take()
        return list(self.received)

    async def _take(self) -> None:
        assert self._queue is not None
        while True:
            message = await self._queue.get(no_ack=True, fail=False)
            if message is None:
                return
            self.received.append(
                Event(message.message_id, message.correlation_id, orjson.loads(message.body))
            )

    def by_task(self) -> dict[int, int]:
        """How many events each task got."""
        counts: dict[int, int] = {}
        for event in self.received:
            counts[event.body["TaskId"]] = counts.get(event.body["TaskId"], 0) + 1
        return counts
