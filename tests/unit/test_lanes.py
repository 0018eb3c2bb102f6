"""The small-task lane's routing, against the in-memory publisher (issue 19)."""

from __future__ import annotations

import asyncio
import time

from engine.messaging.memory import InMemoryPublisher
from engine.messaging.publishing import in_small_lane, small_lane
from engine.messaging.topology import (
    CHUNK_ROUTING_KEY,
    PUBLISHED_AT_HEADER,
    SMALL_ROUTING_KEY,
    Names,
)
from engine.sync.planner import publish_chunks


async def test_chunks_published_inside_the_small_lane_go_to_its_queues() -> None:
    publisher = InMemoryPublisher(push_targets=[1, 2])
    with small_lane():
        await publisher.publish_chunk(7, 0, None)
        await publisher.publish_chunk(7, 2**30, 1)
        await publisher.publish_chunk(7, 2**30 + 1, 9)  # no push queue for 9: the chunk queue
    await publisher.publish_chunk(8, 0, None)
    await publisher.publish_chunk(8, 2**30, 2)
    assert [m.routing_key for m in publisher.messages] == [
        SMALL_ROUTING_KEY,
        "resync.small.push.1",
        SMALL_ROUTING_KEY,
        CHUNK_ROUTING_KEY,
        "resync.push.2",
    ]
    assert Names("p").small == "p.small" and Names("p").small_push(1) == "p.small.push.1"


async def test_the_lane_is_inherited_by_tasks_started_inside_and_can_be_switched_off() -> None:
    publisher = InMemoryPublisher()
    with small_lane():
        assert in_small_lane()
        await publish_chunks(publisher, 7, range(2))  # gathered: tasks of their own
        with small_lane(False):
            await asyncio.gather(publisher.publish_chunk(7, 5, None))
    assert not in_small_lane()
    keys = [m.routing_key for m in publisher.messages]
    assert keys == [SMALL_ROUTING_KEY, SMALL_ROUTING_KEY, CHUNK_ROUTING_KEY]


async def test_every_chunk_command_carries_its_publish_time() -> None:
    publisher = InMemoryPublisher()
    before = int(time.time() * 1000)
    await publisher.publish_chunk(7, 0, None)
    stamp = publisher.messages[0].options["headers"][PUBLISHED_AT_HEADER]
    assert before <= stamp <= int(time.time() * 1000)
