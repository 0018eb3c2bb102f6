"""The confirmed publisher against the real broker: what a publish carries and when it fails.

The publisher talks to aiormq directly (not through aio-pika's Message and Exchange), so these
pin down what those layers used to guarantee: persistent messages with our properties, a
returned (unroutable) message is a failure, and every confirm channel is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aio_pika
import aiormq
import pytest

from engine.messaging.broker import Publisher, PublishFailed, connect
from engine.messaging.topology import CHUNK_ROUTING_KEY, RESYNC_ROUTING_KEY, Names
from engine.settings import BrokerSettings
from tests.support import services
from tests.support.waiting import wait_for


def _settings(prefix: str, channels: int = 1) -> BrokerSettings:
    return BrokerSettings.model_validate(
        {"url": services.AMQP_URL, "prefix": prefix, "publisher_channels": channels}
    )


@pytest.fixture
async def publisher(broker_prefix: str) -> AsyncIterator[Publisher]:
    connection = await connect(_settings(broker_prefix), "test-publisher")
    publisher = Publisher(connection, _settings(broker_prefix))
    await publisher.start()
    yield publisher
    await publisher.close()
    await connection.close()


async def _get(prefix: str, queue: str) -> aio_pika.abc.AbstractIncomingMessage:
    """The next message of ``queue`` (acknowledged), waiting for it."""
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=False)
        found: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def got_one() -> bool:
            message = await declared.get(fail=False)
            if message is not None:
                await message.ack()
                found.append(message)
            return bool(found)

        await wait_for(got_one, timeout=10, what=f"a message in {queue}")
        return found[0]


async def test_a_publish_is_persistent_and_carries_our_properties(
    publisher: Publisher, broker_prefix: str
) -> None:
    message_id = await publisher.publish(
        RESYNC_ROUTING_KEY,
        b'{"ErpConnectionId": 0}',
        message_id="m-1",
        correlation_id="c-1",
        headers={"x-test": "yes"},
    )
    assert message_id == "m-1"
    message = await _get(broker_prefix, Names(broker_prefix).commands)
    assert message.body == b'{"ErpConnectionId": 0}'
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == "m-1"
    assert message.correlation_id == "c-1"
    assert message.content_type == "application/json"
    assert message.headers["x-test"] == "yes"


async def test_without_a_message_id_one_is_made_up(
    publisher: Publisher, broker_prefix: str
) -> None:
    message_id = await publisher.publish(RESYNC_ROUTING_KEY, b"{}")
    assert len(message_id) == 32
    message = await _get(broker_prefix, Names(broker_prefix).commands)
    assert message.message_id == message_id


async def test_an_unroutable_message_fails_the_publish(publisher: Publisher) -> None:
    with pytest.raises(PublishFailed, match=r"(?i)return"):
        await publisher.publish("nobody.listens.here", b"{}")
    # The channel survives a returned message: the next publish is confirmed.
    await publisher.publish(RESYNC_ROUTING_KEY, b"{}")


async def test_publishing_after_close_fails_cleanly(broker_prefix: str) -> None:
    connection = await connect(_settings(broker_prefix), "test-publisher")
    publisher = Publisher(connection, _settings(broker_prefix))
    await publisher.start()
    await publisher.close()
    try:
        with pytest.raises(PublishFailed):
            await publisher.publish(RESYNC_ROUTING_KEY, b"{}")
    finally:
        await connection.close()


@pytest.fixture
async def three_channels(broker_prefix: str) -> AsyncIterator[Publisher]:
    """A publisher spreading its publishes over three confirm channels."""
    settings = _settings(broker_prefix, channels=3)
    connection = await connect(settings, "test-publisher")
    publisher = Publisher(connection, settings)
    await publisher.start()
    yield publisher
    await publisher.close()
    await connection.close()


async def _delivery_tags(publisher: Publisher) -> Callable[[], list[int]]:
    """Reads each confirm channel's publish count (its last delivery tag)."""
    channels = [publisher._channel, *publisher._extra]
    underlays = [await c.get_underlay_channel() for c in channels if c is not None]
    return lambda: [u.delivery_tag for u in underlays]  # type: ignore[attr-defined]


async def test_every_confirm_channel_carries_publishes(three_channels: Publisher) -> None:
    tags = await _delivery_tags(three_channels)
    before = tags()
    for n in range(6):
        await three_channels.publish(RESYNC_ROUTING_KEY, b"{}", message_id=f"rr-{n}")
    assert [a - b for a, b in zip(tags(), before, strict=True)] == [2, 2, 2]


async def test_a_closed_confirm_channel_is_skipped_while_another_is_open(
    three_channels: Publisher,
) -> None:
    """After a reconnect the robust channels come back one by one: a publish takes an open one
    rather than failing on one still closed (a spurious 503 at the front door)."""
    tags = await _delivery_tags(three_channels)
    before = tags()
    await three_channels._extra[0].close()
    for n in range(6):
        await three_channels.publish(RESYNC_ROUTING_KEY, b"{}", message_id=f"skip-{n}")
    assert [a - b for a, b in zip(tags(), before, strict=True)] == [3, 0, 3]
    for channel in [three_channels._channel, *three_channels._extra]:
        if channel is not None and not channel.is_closed:
            await channel.close()
    with pytest.raises(PublishFailed, match="channel closed"):  # none open: it fails
        await three_channels.publish(RESYNC_ROUTING_KEY, b"{}")


async def test_a_stuck_inspection_channel_is_replaced(publisher: Publisher) -> None:
    """The sweeper's queue-depth channel, left refusing calls by a timed-out RPC, is dropped
    and the next call opens a new one (instead of failing on every sweep)."""
    assert await publisher.backlogged() == set()
    assert publisher._inspect is not None
    underlay = await publisher._inspect.get_underlay_channel()
    underlay._Channel__close_event.set()  # type: ignore[attr-defined]  # aiormq's stuck state
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await publisher.backlogged()
    await publisher.publish(CHUNK_ROUTING_KEY, b"{}")
    assert await publisher.backlogged() == {-1}  # the chunk queue holds one message
