"""The engine's consumer: manual acks after commit, bounded prefetch, dead letters with reasons."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from engine.messaging.broker import Publisher, PublishFailed
from engine.messaging.commands import InvalidMessage
from engine.messaging.topology import REASON_HEADER, declare
from engine.observability import metrics
from engine.settings import BrokerSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a handler gets: the body and the message's identity."""

    body: bytes
    message_id: str
    redelivered: bool
    delivery_count: int
    headers: dict[str, Any]


Handler = Callable[[Delivery], Awaitable[None]]


class Consumer:
    """Consumes the command and chunk queues and dispatches to handlers.

    A handler returning normally means "committed": the delivery is acked. ``InvalidMessage``
    sends a copy with the reason to the dead-letter exchange, then acks. Any other error
    requeues after a delay that grows with the delivery count; the queue's delivery limit
    dead-letters a message that keeps failing.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        settings: BrokerSettings,
        publisher: Publisher,
        handlers: dict[str, Handler],
    ) -> None:
        self._connection = connection
        self._settings = settings
        self._publisher = publisher
        self._handlers = handlers  # queue attribute name on Topology -> handler
        self._channel: AbstractRobustChannel | None = None
        self._queues: list[tuple[AbstractQueue, str]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        channel = await self._connection.channel()
        assert isinstance(channel, AbstractRobustChannel)
        await channel.set_qos(prefetch_count=self._settings.prefetch)
        self._channel = channel
        topology = await declare(channel, self._publisher.names, self._settings.delivery_limit)
        for attr, handler in self._handlers.items():
            queue: AbstractQueue = getattr(topology, attr)
            tag = await queue.consume(self._callback(handler), no_ack=False)
            self._queues.append((queue, tag))
        log.info("consumer started", queues=[q.name for q, _ in self._queues])

    @property
    def is_attached(self) -> bool:
        return bool(self._queues) and self._channel is not None and not self._channel.is_closed

    def _callback(self, handler: Handler) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                await self._handle(handler, message)
            finally:
                self._inflight.discard(task)

        return on_message

    async def _handle(self, handler: Handler, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        delivery = Delivery(
            body=message.body,
            message_id=message.message_id or f"tag-{message.delivery_tag}",
            redelivered=bool(message.redelivered),
            delivery_count=_delivery_count(headers),
            headers=headers,
        )
        with structlog.contextvars.bound_contextvars(message_id=delivery.message_id):
            try:
                await handler(delivery)
            except asyncio.CancelledError:
                # Shutdown deadline passed: leave the delivery unacked; closing the channel
                # returns it to the queue for another worker.
                log.warning("delivery abandoned at shutdown; it will be redelivered")
                raise
            except InvalidMessage as exc:
                metrics.of(self).consumed(message.routing_key, "dead_lettered")
                await self._dead_letter(message, str(exc))
            except Exception:
                delay = min(30.0, 0.5 * 2 ** min(delivery.delivery_count, 6))
                log.exception("delivery failed; requeueing", retry_in=delay)
                metrics.of(self).consumed(message.routing_key, "requeued")
                await asyncio.sleep(delay)
                await _settle(message.nack(requeue=True))
            else:
                metrics.of(self).consumed(message.routing_key, "acked")
                await _settle(message.ack())

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.warning("invalid message dead-lettered", reason=reason)
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason[:1000]
        headers["x-erpsync-original-routing-key"] = message.routing_key or ""
        try:
            await self._publisher.publish(
                message.routing_key or "",
                message.body,
                message_id=message.message_id,
                headers=headers,
                exchange=self._publisher.names.dead_letter_exchange,
            )
        except PublishFailed:
            log.exception("could not dead-letter; requeueing")
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())

    async def stop(self, deadline: float) -> None:
        """Stop taking deliveries, let in-flight ones finish until ``deadline``, then leave."""
        self._stopping = True
        for queue, tag in self._queues:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        self._queues.clear()
        if self._inflight:
            log.info("draining in-flight deliveries", count=len(self._inflight))
            _, pending = await asyncio.wait(set(self._inflight), timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()


async def _settle(action: Awaitable[Any]) -> None:
    # A delivery from a channel that died cannot be settled; the broker requeues it anyway.
    try:
        await action
    except Exception as exc:
        log.warning("could not settle delivery; the broker will redeliver it", error=str(exc))


def _delivery_count(headers: dict[str, Any]) -> int:
    value = headers.get("x-delivery-count")
    return value if isinstance(value, int) else 0
