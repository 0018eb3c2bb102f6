"""RabbitMQ connections and the confirmed publisher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic

from engine.messaging.commands import new_message_id
from engine.messaging.publishing import ChunkRouting, PublishFailed
from engine.messaging.topology import Names, Topology, declare
from engine.observability.metrics import Metrics
from engine.settings import BrokerSettings, redact_url

log = structlog.get_logger(__name__)

__all__ = ["PublishFailed", "Publisher", "close_quietly", "connect"]


Properties = Basic.Properties
PERSISTENT = 2  # delivery_mode of a persistent message


async def close_quietly(closing: Awaitable[object], timeout: float = 5.0) -> None:
    """Await a broker object's close without letting a dead broker hold anything up."""
    try:
        async with asyncio.timeout(timeout):
            await closing
    except Exception as exc:
        log.warning("close failed", error=repr(exc))


async def connect(settings: BrokerSettings, role: str) -> AbstractRobustConnection:
    """Open a robust connection named after its role (visible in the management UI)."""
    url = settings.url.get_secret_value()
    connection = await asyncio.wait_for(
        aio_pika.connect_robust(
            url,
            client_properties={"connection_name": f"erpsync-{role}"},
            timeout=settings.connect_timeout,
        ),
        timeout=settings.connect_timeout + 1,
    )

    def _reconnected(*_: Any) -> None:
        log.info("broker reconnected", role=role, url=redact_url(url))

    connection.reconnect_callbacks.add(_reconnected)
    return connection


class Publisher(ChunkRouting):
    """Publishes persistent messages with publisher confirms and ``mandatory`` routing.

    Each publish waits for the broker's confirm, bounded by ``publish_timeout``; concurrent
    publishes share the channel, so confirms are pipelined.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        settings: BrokerSettings,
        push_targets: Sequence[int] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self._connection = connection
        self.metrics = Metrics() if metrics is None else metrics
        self._settings = settings
        self.names = Names(settings.prefix)
        self.push_targets = frozenset(push_targets)
        """Target connections with a push queue (declared at start)."""
        self._channel: AbstractRobustChannel | None = None
        self.topology: Topology | None = None
        # Extra confirm channels (broker.publisher_channels > 1): publishes go round-robin.
        self._extra: list[AbstractRobustChannel] = []
        self._next = 0
        self._inspect: AbstractChannel | None = None  # queue depths for the sweeper

    async def start(self) -> None:
        """Open the confirm channel(s) and declare the topology."""
        channel = await self._open_channel()
        self._channel = channel
        self.topology = await declare(
            channel, self.names, self._settings.delivery_limit, sorted(self.push_targets)
        )
        for _ in range(self._settings.publisher_channels - 1):
            self._extra.append(await self._open_channel())

    async def _open_channel(self) -> AbstractRobustChannel:
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        assert isinstance(channel, AbstractRobustChannel)
        return channel

    async def backlogged(self) -> set[int]:
        """Work queues holding ready messages: push queues by target id, -1 the chunk queue
        (either lane's).

        Uses one long-lived channel (opened on first use, again after a channel error): the
        sweeper asks on every pass, and opening a channel per pass would churn channels (and
        cancelling a task inside aio-pika's channel open is best avoided).
        """
        queues = [(-1, self.names.chunks), (-1, self.names.small)]
        queues += [(t, self.names.push(t)) for t in sorted(self.push_targets)]
        queues += [(t, self.names.small_push(t)) for t in sorted(self.push_targets)]
        if self._inspect is None or self._inspect.is_closed:
            self._inspect = await self._connection.channel()
        # The underlying aiormq channel: aio-pika's robust channel caches a declared queue and
        # would hand back its first declaration's message count every time.
        channel = await self._inspect.get_underlay_channel()
        busy = set()
        try:
            for key, name in queues:
                declared = await channel.queue_declare(name, passive=True)
                if declared.message_count:
                    busy.add(key)
        except aiormq.exceptions.ChannelInvalidStateError:
            # A timed-out call leaves the channel refusing every call, without closing it (see
            # Consumer._replace_channel): the next pass opens a new one.
            stuck, self._inspect = self._inspect, None
            await close_quietly(stuck.close())
            raise
        return busy

    async def close(self) -> None:
        if self._inspect is not None and not self._inspect.is_closed:
            await self._inspect.close()
        for extra in self._extra:
            if not extra.is_closed:
                await extra.close()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    def _next_channel(self) -> AbstractRobustChannel:
        """The next confirm channel round-robin, skipping closed ones: after a reconnect the
        channels are restored one by one, and a publish should not fail on one still closed
        while another is open. All closed: the next one (the publish then fails)."""
        assert self._channel is not None
        count = len(self._extra) + 1
        for _ in range(count):
            self._next = (self._next + 1) % count
            channel = self._channel if self._next == 0 else self._extra[self._next - 1]
            if not channel.is_closed:
                return channel
        return channel

    @property
    def is_open(self) -> bool:
        return (
            self._channel is not None
            and not self._channel.is_closed
            and not self._connection.is_closed
        )

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        exchange: str | None = None,
        correlation_id: str | None = None,
        content_type: str | None = "application/json",
        mandatory: bool = True,
    ) -> str:
        """Publish and wait for the confirm; returns the message id. Raises PublishFailed.

        ``mandatory=False`` (events): a message no queue is bound for is confirmed and dropped
        by the broker instead of returned.
        """
        if self.topology is None or self._channel is None:
            raise PublishFailed("publisher is not started")
        message_id = message_id or new_message_id()
        # Straight onto aiormq (aio-pika's Message and Exchange layers cost ~5% of a busy
        # front door); the channel was opened by aio-pika with confirms and on_return_raises.
        properties = Properties(
            content_type=content_type,
            delivery_mode=PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            headers=dict(headers) if headers else {},
        )
        channel = self._channel if not self._extra else self._next_channel()
        deadline = time.monotonic() + self._settings.publish_timeout
        try:
            if channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
            if self._connection.connected.is_set():
                underlay = await channel.get_underlay_channel()  # connected: no wait
            else:  # get_underlay_channel waits out a reconnect (bounded by the timeout)
                async with asyncio.timeout(self._settings.publish_timeout):
                    underlay = await channel.get_underlay_channel()
            # aiormq bounds the publish and its confirm by what is left of the timeout (its own
            # asyncio.timeout: one timer per publish instead of a second one around it here).
            await cast(aiormq.Channel, underlay).basic_publish(
                body,
                exchange=self.names.exchange if exchange is None else exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                wait=False,  # the confirm comes after the write anyway
                timeout=deadline - time.monotonic(),
            )
        except TimeoutError:
            self.metrics.publish_failed(routing_key)
            raise PublishFailed(
                f"no confirm from the broker within {self._settings.publish_timeout:g}s"
            ) from None
        except Exception as exc:  # closed channel, connection lost, returned, nacked
            self.metrics.publish_failed(routing_key)
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc
        self.metrics.published(routing_key)
        return message_id
