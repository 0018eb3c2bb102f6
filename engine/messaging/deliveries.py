"""Handling one delivery: run its handler, then ack, requeue or dead-letter it.

Each delivery is settled by exactly one outcome: acked after its handler returned (the handler
commits before), dead-lettered with the reason when it is invalid, requeued after a delay that
grows with its delivery count when the handler failed; while PostgreSQL or the broker is
unreachable the handler is retried in place (up to ``hold_limit`` seconds), and a cancelled
delivery (drain deadline, channel closed) is requeued. :class:`~engine.messaging.consumer.Consumer`
owns the subscriptions and hands every delivery to :class:`Deliveries`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aio_pika.abc import AbstractIncomingMessage

from engine.messaging.broker import Publisher, PublishFailed
from engine.messaging.commands import InvalidMessage
from engine.messaging.topology import (
    DEAD_LETTERED_AT_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
)
from engine.observability.metrics import Metrics

log = structlog.get_logger(__name__)

SETTLE_TIMEOUT = 5.0

# Errors meaning "a service is down", not "this message is bad".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    PublishFailed,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a handler gets: the body and the message's identity."""

    body: bytes
    message_id: str
    redelivered: bool
    delivery_count: int
    headers: dict[str, Any]


Handler = Callable[[Delivery], Awaitable[None]]


def message_identity(message_id: str | None, body: bytes) -> str:
    """The id used for deduplication: ``message_id``, else a digest of the body.

    A digest keeps redeliveries of a message without ``message_id`` (e.g. from ``amqp-publish``)
    idempotent; a random fallback would run each redelivery again.
    """
    if message_id:
        return message_id
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Deliveries:
    """Runs deliveries through their handlers and settles them."""

    def __init__(
        self, publisher: Publisher, metrics: Metrics, stopping: asyncio.Event, hold_limit: float
    ) -> None:
        """``stopping``: set when the consumer stops (pauses end, no retries in place)."""
        self.publisher = publisher
        self.metrics = metrics
        self.hold_limit = hold_limit  # seconds a delivery is retried in place during outages
        self._stopping = stopping
        self._locks: dict[str, _KeyLock] = {}

    async def handle(self, handler: Handler, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        delivery = Delivery(
            body=message.body,
            message_id=message_identity(message.message_id, message.body),
            redelivered=bool(message.redelivered),
            delivery_count=delivery_count(headers),
            headers=headers,
        )
        with structlog.contextvars.bound_contextvars(message_id=delivery.message_id):
            try:
                async with self._exclusive(delivery.message_id):
                    await self._run(handler, delivery)
            except asyncio.CancelledError:
                # Drain deadline passed or the channel closed. aio-pika's process() would reject
                # (and so dead-letter) here; we hand the delivery back for another worker.
                log.warning("delivery cancelled before it finished; requeueing")
                await settle(message.nack(requeue=True))
                raise
            except InvalidMessage as exc:
                self.metrics.consumed(message.routing_key, "dead_lettered")
                await self._dead_letter(message, str(exc))
            except Exception:
                delay = min(30.0, 0.5 * 2 ** min(delivery.delivery_count, 6))
                log.exception("delivery failed; requeueing", retry_in=delay)
                self.metrics.consumed(message.routing_key, "requeued")
                await self._pause(delay)
                await settle(message.nack(requeue=True))
            else:
                self.metrics.consumed(message.routing_key, "acked")
                await settle(message.ack())

    @contextlib.asynccontextmanager
    async def _exclusive(self, message_id: str) -> AsyncIterator[None]:
        """One delivery per message id at a time in this process.

        Two copies of a message (a publisher retry, a redelivery after a reconnect) can be in
        flight together; run concurrently, both would plan or resync before either commits.
        Serialised, the second finds the first's commit and becomes a no-op.
        """
        entry = self._locks.get(message_id)
        if entry is None:
            entry = self._locks[message_id] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[message_id]

    async def _run(self, handler: Handler, delivery: Delivery) -> None:
        """Run the handler; while PostgreSQL or the broker is unreachable, retry in place.

        Every requeue counts against the queue's delivery limit (RabbitMQ 3.10 counts nacks),
        so an outage of a few minutes would otherwise dead-letter every message in flight.
        Holding the delivery keeps its count; the handlers are idempotent, so a rerun is safe.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                await handler(delivery)
                return
            except _UNAVAILABLE as exc:
                held = time.monotonic() - started
                if self._stopping.is_set() or held > self.hold_limit:
                    raise
                delay = min(15.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
                attempt += 1
                log.warning(
                    "a service is unavailable; retrying the delivery in place",
                    error=f"{type(exc).__name__}: {exc}",
                    attempt=attempt,
                    retry_in=round(delay, 2),
                )
                await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the consumer stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.warning("invalid message dead-lettered", reason=reason)
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason[:1000]
        headers[ORIGINAL_ROUTING_KEY_HEADER] = message.routing_key or ""
        headers[DEAD_LETTERED_AT_HEADER] = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            await self.publisher.publish(
                message.routing_key or "",
                message.body,
                # The id it was deduplicated by, so a replay is recognised as the same message.
                message_id=message_identity(message.message_id, message.body),
                headers=headers,
                exchange=self.publisher.names.dead_letter_exchange,
                content_type=message.content_type,
            )
        except PublishFailed:
            log.exception("could not dead-letter; requeueing")
            await settle(message.nack(requeue=True))
            return
        await settle(message.ack())


async def settle(action: Awaitable[Any]) -> None:
    # A delivery from a channel that died cannot be settled; the broker requeues it anyway.
    try:
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await action
    except Exception as exc:
        log.warning("could not settle delivery; the broker will redeliver it", error=repr(exc))


def delivery_count(headers: dict[str, Any]) -> int:
    value = headers.get("x-delivery-count")
    return value if isinstance(value, int) else 0
