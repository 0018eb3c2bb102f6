"""Inspect, replay and discard the dead-letter queue (``erpsync dlq``).

Listing peeks: messages are fetched with ``basic.get`` and manual acks, then all handed back with
``nack(requeue=True)``, so the queue is unchanged. Replaying moves a message: it is republished to
the work exchange with publisher confirms and ``mandatory``, and only after the confirm is it acked
(removed) from the dead-letter queue; a failed publish requeues it. At worst (the ack is lost after
the confirm) a message is in both queues, which consumers deduplicate by ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from engine.messaging.deliveries import message_identity
from engine.messaging.topology import (
    DEAD_LETTERED_AT_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    REPLAY_COUNT_HEADER,
    Names,
)
from engine.settings import BrokerSettings

# Headers describing a past death; a replayed message starts clean (the count is kept).
_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
    REASON_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    DEAD_LETTERED_AT_HEADER,
)


class DeadLetterError(Exception):
    """The dead-letter queue cannot be read; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message, as ``erpsync dlq list`` shows it."""

    id: str
    reason: str
    routing_key: str
    time: str | None
    source_queue: str | None
    replays: int
    size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ReplayReport:
    """What ``replay`` did."""

    replayed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DiscardReport:
    """What ``discard`` did."""

    discarded: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    """Read the reason, original routing key and time from our headers or RabbitMQ's x-death."""
    headers = dict(message.headers or {})
    death = _first_death(headers)
    reason = headers.get(REASON_HEADER)
    if not isinstance(reason, str | bytes):
        if death is not None:
            reason = (
                f"{_text(death.get('reason')) or 'dead-lettered'} in {_text(death.get('queue'))}"
            )
            if death.get("count"):
                reason += f" ({death['count']}x)"
        else:
            reason = "unknown (no reason header)"
    routing_key = _text(headers.get(ORIGINAL_ROUTING_KEY_HEADER))
    if not routing_key and death is not None:
        keys = death.get("routing-keys")
        if isinstance(keys, list | tuple) and keys:
            routing_key = _text(keys[0])
    time = _text(headers.get(DEAD_LETTERED_AT_HEADER)) or None
    if time is None and death is not None and isinstance(death.get("time"), datetime):
        time = death["time"].isoformat(timespec="seconds")
    replays = headers.get(REPLAY_COUNT_HEADER)
    return DeadLetter(
        id=dead_letter_id(message),
        reason=_text(reason),
        routing_key=routing_key or message.routing_key or "",
        time=time,
        source_queue=_text(death.get("queue")) if death is not None else None,
        replays=replays if isinstance(replays, int) else 0,
        size=len(message.body),
    )


def dead_letter_id(message: AbstractIncomingMessage) -> str:
    """What ``--id`` matches: ``message_id``, else the body's digest (as the consumer uses)."""
    return message_identity(message.message_id, message.body)


def _first_death(headers: dict[str, Any]) -> dict[str, Any] | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@contextlib.asynccontextmanager
async def _session(
    settings: BrokerSettings,
) -> AsyncIterator[tuple[AbstractConnection, AbstractChannel, AbstractQueue]]:
    names = Names(settings.prefix)
    async with asyncio.timeout(settings.connect_timeout + 1):
        connection = await aio_pika.connect(
            settings.url.get_secret_value(),
            client_properties={"connection_name": "erpsync-dlq"},
            timeout=settings.connect_timeout,
        )
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            queue = await channel.declare_queue(names.dead_letters, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise DeadLetterError(
                f"there is no dead-letter queue {names.dead_letters!r} on the broker; "
                "check broker.prefix, or start a worker once (it declares the queues)"
            ) from None
        yield connection, channel, queue
    finally:
        await connection.close()


async def _fetch(queue: AbstractQueue, limit: int) -> AsyncIterator[AbstractIncomingMessage]:
    for _ in range(limit):
        message = await queue.get(no_ack=False, fail=False, timeout=5)
        if message is None:
            return
        yield message


async def list_dead_letters(settings: BrokerSettings, limit: int) -> tuple[list[DeadLetter], int]:
    """Up to ``limit`` dead letters (oldest first) and how many the queue holds; nothing moves."""
    async with _session(settings) as (_, _, queue):
        total = _message_count(queue)
        held: list[AbstractIncomingMessage] = []
        try:
            async for message in _fetch(queue, min(limit, total)):
                held.append(message)
            return [describe(m) for m in held], total
        finally:
            for message in held:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)


async def replay(
    settings: BrokerSettings, ids: set[str] | None, *, limit: int | None = None
) -> ReplayReport:
    """Republish dead letters (``ids``, or all when None) to the work exchange, then remove them.

    Only the messages present when the replay starts are considered, so a message that is
    dead-lettered again meanwhile is not replayed in a loop. Stops at the first failed publish;
    that message and all later ones stay in the dead-letter queue.
    """
    names = Names(settings.prefix)
    report = ReplayReport()
    wanted = set(ids) if ids is not None else None
    async with _session(settings) as (_, channel, queue):
        exchange = await channel.get_exchange(names.exchange, ensure=False)
        total = _message_count(queue)
        budget = total if limit is None else min(limit, total)
        skipped: list[AbstractIncomingMessage] = []
        try:
            async for message in _fetch(queue, total):
                letter = describe(message)
                if (wanted is not None and letter.id not in wanted) or budget <= 0:
                    skipped.append(message)
                    continue
                try:
                    async with asyncio.timeout(settings.publish_timeout):
                        await exchange.publish(_replayed(message), letter.routing_key)
                except Exception as exc:
                    skipped.append(message)
                    report.failed.append((letter.id, _failure(exc, settings)))
                    break
                await message.ack()
                budget -= 1
                report.replayed.append(letter.id)
        finally:
            for message in skipped:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
    if wanted is not None:
        done = set(report.replayed) | {i for i, _ in report.failed}
        report.not_found = sorted(wanted - done)
    return report


async def discard(settings: BrokerSettings, ids: set[str] | None) -> DiscardReport:
    """Remove dead letters (``ids``, or all when None) for good, acking them; the rest stay.

    Only the messages present when it starts are considered; every message with a given id
    goes (identical bodies without ``message_id`` share their digest id).
    """
    report = DiscardReport()
    async with _session(settings) as (_, _, queue):
        kept: list[AbstractIncomingMessage] = []
        try:
            async for message in _fetch(queue, _message_count(queue)):
                letter_id = dead_letter_id(message)
                if ids is not None and letter_id not in ids:
                    kept.append(message)
                    continue
                await message.ack()
                report.discarded.append(letter_id)
        finally:
            for message in kept:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
    if ids is not None:
        report.not_found = sorted(ids - set(report.discarded))
    return report


def _replayed(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _DEATH_HEADERS}
    count = headers.get(REPLAY_COUNT_HEADER)
    headers[REPLAY_COUNT_HEADER] = (count if isinstance(count, int) else 0) + 1
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _failure(exc: BaseException, settings: BrokerSettings) -> str:
    if isinstance(exc, TimeoutError):
        return f"no confirm from the broker within {settings.publish_timeout:g}s"
    if isinstance(exc, aio_pika.exceptions.DeliveryError):
        return "the broker returned the message (no queue bound for its routing key)"
    return f"{type(exc).__name__}: {exc}"


def _message_count(queue: AbstractQueue) -> int:
    result = queue.declaration_result
    count = getattr(result, "message_count", None)
    return count if isinstance(count, int) else 0
