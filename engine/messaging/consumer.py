"""The engine's consumer: manual acks after commit, bounded prefetch, dead letters with reasons.

Lifecycle:

* ``start()`` opens a channel on the robust worker connection, sets the prefetch, declares the
  topology and subscribes to every queue. Each target connection's push queue gets a channel of
  its own with its own prefetch (a prefetch is per channel here), so a slow target's units
  cannot take the delivery slots of the other targets or of the chunk queue; so do the queues
  of the small-task lane (its chunk queue and a push queue per target), whose handler runs
  inside :func:`~engine.messaging.publishing.small_lane` (the push units a small chunk stores
  are published to the small lane too). A supervisor task
  then checks every ``check_interval`` seconds (and at once after a reconnect or channel
  reopen) that each subscription still exists on its live channel, and subscribes again when
  it does not. The
  subscriptions are made with ``robust=False`` so the supervisor is their only owner: aio-pika's
  own consumer restoration has left queues without consumers after broker restarts
  (mosquito/aio-pika#231, #626), and two owners could attach a consumer twice.
* ``begin_stop()`` (SIGTERM/SIGINT) cancels the subscriptions; deliveries that still arrive are
  requeued unprocessed. ``stop()`` waits for in-flight deliveries until the drain deadline,
  cancels the rest (each requeues its delivery: never a reject without requeue), then closes the
  channel.

A delivery whose channel died before it was settled cannot be acked any more (its tag belongs to
the dead channel, mosquito/aio-pika#312); the broker requeues it and the handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiormq
import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)

from engine.messaging.broker import Publisher, close_quietly
from engine.messaging.deliveries import (
    SETTLE_TIMEOUT,
    Deliveries,
    Delivery,
    Handler,
    message_identity,
    settle,
)
from engine.messaging.publishing import small_lane
from engine.messaging.topology import (
    PUBLISHED_AT_HEADER,
    declare,
    declare_push_queue,
    declare_small_queue,
)
from engine.observability.metrics import Metrics
from engine.settings import BrokerSettings

log = structlog.get_logger(__name__)

__all__ = ["Consumer", "Delivery", "Handler", "message_identity"]


SMALL = "small"


@dataclass(slots=True)
class _Subscription:
    attr: str  # queue attribute name on Topology, "push.<id>", "small" or "small.push.<id>"
    handler: Handler
    target: int | None = None  # a push queue's connection: consumed on its own channel
    prefetch: int = 0  # that channel's prefetch
    small: bool = False  # a queue of the small-task lane
    channel: AbstractRobustChannel | None = None
    queue: AbstractRobustQueue | None = None
    tag: str | None = None

    @property
    def own_channel(self) -> bool:
        """A push queue or the small-task lane: a channel (and prefetch) of its own."""
        return self.target is not None or self.small

    @property
    def lane(self) -> str:
        """The ``lane`` label of the wait metric."""
        return SMALL if self.small else "bulk"


class Consumer:
    """Consumes the command and chunk queues and dispatches to handlers.

    A handler returning normally means "committed": the delivery is acked. ``InvalidMessage``
    sends a copy with the reason to the dead-letter exchange (confirmed), then acks. Any other
    error requeues after a delay that grows with the delivery count; the queue's delivery limit
    dead-letters a message that keeps failing (:mod:`engine.messaging.deliveries`).
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        settings: BrokerSettings,
        publisher: Publisher,
        handlers: dict[str, Handler],
        *,
        push: Mapping[int, int] | None = None,
        push_handler: Handler | None = None,
        small_handler: Handler | None = None,
        check_interval: float = 5.0,
        hold_limit: float = 600.0,
        metrics: Metrics | None = None,
    ) -> None:
        """``push``: target connection id -> prefetch of its push queue, run by ``push_handler``;
        ``small_handler`` runs the small-task lane (``settings.small_lane_prefetch``)."""
        self._connection = connection
        self._settings = settings
        self._publisher = publisher
        self.metrics = Metrics() if metrics is None else metrics
        self._subscriptions = [_Subscription(attr, handler) for attr, handler in handlers.items()]
        for target, prefetch in sorted((push or {}).items()):
            assert push_handler is not None
            self._subscriptions.append(
                _Subscription(f"push.{target}", push_handler, target=target, prefetch=prefetch)
            )
        if small_handler is not None:
            prefetch = settings.small_lane_prefetch
            self._subscriptions.append(
                _Subscription(SMALL, small_handler, prefetch=prefetch, small=True)
            )
            # Each target's small push queue with the target's own push prefetch: the target's
            # units in flight are bounded per lane as they are in the bulk lane.
            for target, unit_prefetch in sorted((push or {}).items()):
                self._subscriptions.append(
                    _Subscription(
                        f"small.push.{target}", small_handler, target, unit_prefetch, small=True
                    )
                )
        self._check_interval = check_interval
        self._channel: AbstractRobustChannel | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.deliveries = Deliveries(publisher, self.metrics, self._stopping, hold_limit)
        self._wake = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._stop_started = 0.0
        self.resubscriptions = 0

    async def start(self) -> None:
        """Open the channels, declare the topology, subscribe, and start the supervisor."""
        await self._set_up([s for s in self._subscriptions if not s.own_channel])
        for sub in self._subscriptions:
            if sub.own_channel:
                await self._set_up([sub])
        for sub in self._subscriptions:
            await self._subscribe(sub)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._supervisor = asyncio.create_task(self._supervise(), name="consumer-supervisor")
        log.info("consumer started", queues=[s.queue.name for s in self._subscriptions if s.queue])

    async def _set_up(self, subs: list[_Subscription]) -> None:
        """Open a channel for ``subs`` and declare their queues on it: the shared channel (the
        whole topology, for the command and chunk queues), or the own channel of one push queue
        or of the small-task lane."""
        names, limit = self._publisher.names, self._settings.delivery_limit
        own = subs[0] if subs and subs[0].own_channel else None
        prefetch = self._settings.prefetch if own is None else own.prefetch
        channel = await self._open_channel(prefetch)
        try:
            if own is None:
                topology = await declare(channel, names, limit)
                queues = {sub.attr: getattr(topology, sub.attr) for sub in subs}
            elif own.target is not None:
                queue = await declare_push_queue(channel, names, limit, own.target, small=own.small)
                queues = {own.attr: queue}
            else:
                queues = {own.attr: await declare_small_queue(channel, names, limit)}
        except BaseException:  # retried by the next pass: do not leave a channel per attempt
            await close_quietly(channel.close(), SETTLE_TIMEOUT)
            raise
        if own is None:
            self._channel = channel
        for sub in subs:
            queue = queues[sub.attr]
            assert isinstance(queue, AbstractRobustQueue)
            sub.channel = channel
            sub.queue = queue  # strong reference: robust objects are restored only while alive
            sub.tag = None

    async def _replace_channel(self, broken: AbstractRobustChannel) -> None:
        """Give the subscriptions of ``broken`` a new channel.

        After an RPC times out (e.g. ``basic.consume`` on a quorum queue still electing its
        leader after a broker crash), aiormq refuses every further call on that channel
        ("Channel closed by RPC timeout") until the broker confirms the close, which may never
        happen; aio-pika does not reopen it either. Retrying on it would fail forever.
        """
        subs = [sub for sub in self._subscriptions if sub.channel is broken]
        for sub in subs:
            sub.channel, sub.queue, sub.tag = None, None, None  # set up again by the next pass
        await close_quietly(broken.close(), SETTLE_TIMEOUT)
        await self._set_up_missing()

    async def _set_up_missing(self) -> None:
        """Channels for the subscriptions that lost theirs in :meth:`_replace_channel`."""
        missing = [sub for sub in self._subscriptions if sub.channel is None]
        shared = [sub for sub in missing if not sub.own_channel]
        groups = ([shared] if shared else []) + [[s] for s in missing if s.own_channel]
        for group in groups:
            await self._set_up(group)
            log.info("consumer channel replaced", queues=[sub.attr for sub in group])

    async def _open_channel(self, prefetch: int) -> AbstractRobustChannel:
        channel = await self._connection.channel()
        assert isinstance(channel, AbstractRobustChannel)
        await channel.set_qos(prefetch_count=prefetch)
        channel.reopen_callbacks.add(self._on_reconnect)
        return channel

    def _channels(self) -> list[AbstractRobustChannel]:
        channels = [sub.channel for sub in self._subscriptions if sub.channel is not None]
        if self._channel is not None:
            channels.append(self._channel)
        return list({id(c): c for c in channels}.values())

    def _on_reconnect(self, *_: Any) -> None:
        self._wake.set()

    async def _subscribe(self, sub: _Subscription) -> None:
        assert sub.queue is not None
        sub.tag = await sub.queue.consume(
            self._callback(sub), no_ack=False, robust=False, timeout=SETTLE_TIMEOUT
        )

    async def _live_consumer_tags(self, channel: AbstractRobustChannel | None) -> set[str] | None:
        """Tags subscribed on the live ``channel``; None while the channel is down."""
        if channel is None or channel.is_closed or self._connection.is_closed:
            return None
        try:
            async with asyncio.timeout(1):
                underlay = await channel.get_underlay_channel()
        except Exception:
            return None
        if underlay.is_closed or not isinstance(underlay, aiormq.Channel):
            return None
        return set(underlay.consumers)

    @property
    def is_attached(self) -> bool:
        """Every queue has a subscription on an open channel (as far as this process knows)."""
        if self._stopping.is_set() or self._connection.is_closed:
            return False
        return all(
            sub.tag is not None and sub.channel is not None and not sub.channel.is_closed
            for sub in self._subscriptions
        )

    async def ensure_attached(self) -> int:
        """Subscribe again to every queue whose subscription is gone; return how many."""
        if self._stopping.is_set():
            return 0
        try:
            await self._set_up_missing()
        except Exception as exc:  # the broker is still away: the next pass tries again
            log.warning("could not open a consumer channel", error=repr(exc))
        live_by_channel: dict[int, set[str] | None] = {}
        for channel in self._channels():
            live_by_channel[id(channel)] = await self._live_consumer_tags(channel)
        attached = 0
        broken: dict[int, AbstractRobustChannel] = {}
        for sub in self._subscriptions:
            live = live_by_channel.get(id(sub.channel))
            if live is None:
                sub.tag = None  # the channel is down: the broker dropped the subscription
                continue
            if sub.tag is not None and sub.tag in live:
                continue
            try:
                await self._subscribe(sub)
            except Exception as exc:
                sub.tag = None
                log.warning("could not subscribe; will retry", queue=sub.attr, error=repr(exc))
                if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError) and sub.channel:
                    broken[id(sub.channel)] = sub.channel
                continue
            attached += 1
            self.resubscriptions += 1
            log.info("consumer re-attached", queue=sub.queue.name if sub.queue else sub.attr)
        for channel in broken.values():
            try:
                await self._replace_channel(channel)
            except Exception as exc:  # the broker is still away: the next pass tries again
                log.warning("could not open a consumer channel", error=repr(exc))
            self._wake.set()  # subscribe on the new channel without waiting a whole interval
        return attached

    async def _supervise(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.ensure_attached()
            except Exception:
                log.exception("consumer supervision failed; retrying")

    def _callback(self, sub: _Subscription) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        handler, lane, small = sub.handler, sub.lane, sub.small

        async def on_message(message: AbstractIncomingMessage) -> None:
            if self._stopping.is_set():  # arrived between basic.cancel and cancel-ok
                await settle(message.nack(requeue=True))
                return
            published = (message.headers or {}).get(PUBLISHED_AT_HEADER)
            if isinstance(published, int) and not isinstance(published, bool):
                self.metrics.waited(lane, max(0.0, time.time() - published / 1000))
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                with small_lane(small):
                    await self.deliveries.handle(handler, message)
            finally:
                self._inflight.discard(task)

        return on_message

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def begin_stop(self) -> None:
        """Stop taking deliveries: cancel every subscription (the channel stays open for acks)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._stop_started = time.monotonic()
        self._wake.set()
        await self._cancel_subscriptions()
        log.info("consumer stopped taking deliveries", in_flight=len(self._inflight))

    async def _cancel_subscriptions(self) -> None:
        async def cancel(queue: AbstractRobustQueue, tag: str) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await queue.cancel(tag)

        cancels = []
        for sub in self._subscriptions:
            channel_open = sub.channel is not None and not sub.channel.is_closed
            # With the channel down there is nothing to cancel (and nobody to wait for).
            if channel_open and sub.queue is not None and sub.tag is not None:
                cancels.append(cancel(sub.queue, sub.tag))
            sub.tag = None
        await asyncio.gather(*cancels)  # at once: one broker round trip of waiting, not one each

    async def stop(self, drain_timeout: float) -> None:
        """Drain, requeue what is left, close: all within ``drain_timeout`` of ``begin_stop()``.

        In-flight deliveries get the timeout less a margin (at most 3 s) kept back for
        requeueing the rest and closing the channel.
        """
        await self.begin_stop()
        margin = min(3.0, drain_timeout / 4)
        deadline = self._stop_started + drain_timeout - margin
        if self._supervisor is not None:
            # It exits by itself once stopping is set; let a re-subscription in progress finish
            # (cancelling it mid-RPC could leave a subscription we know no tag of).
            _, running = await asyncio.wait({self._supervisor}, timeout=SETTLE_TIMEOUT)
            for task in running:
                task.cancel()
            await self._cancel_subscriptions()
        if self._inflight:
            log.info("draining in-flight deliveries", count=len(self._inflight))
            _, pending = await asyncio.wait(
                set(self._inflight), timeout=max(0.0, deadline - time.monotonic())
            )
            for task in pending:
                task.cancel()
            if pending:
                log.warning("drain deadline passed; requeueing", count=len(pending))
                await asyncio.wait(pending, timeout=SETTLE_TIMEOUT)
        self._connection.reconnect_callbacks.discard(self._on_reconnect)
        channels = self._channels()
        for channel in channels:
            channel.reopen_callbacks.discard(self._on_reconnect)
        closing = [channel.close() for channel in channels if not channel.is_closed]
        if closing:  # all channels at once, within one settle timeout
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    await asyncio.gather(*closing, return_exceptions=True)
        log.info("consumer closed")
