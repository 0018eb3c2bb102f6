"""The planner's publishes against the in-memory publisher: no broker, no private methods."""

from __future__ import annotations

import pytest

from engine.messaging.commands import ChunkCommand, parse
from engine.messaging.memory import InMemoryPublisher
from engine.messaging.publishing import PublishFailed
from engine.messaging.topology import CHUNK_ROUTING_KEY
from engine.sync.planner import publish_chunks


async def test_planned_chunks_go_to_the_chunk_queue_with_one_message_id_per_chunk() -> None:
    publisher = InMemoryPublisher(push_targets=[1, 2])
    await publish_chunks(publisher, 7, range(3))
    assert [m.routing_key for m in publisher.messages] == [CHUNK_ROUTING_KEY] * 3
    # the message id names the chunk, so a republished chunk is recognised as the same one
    assert publisher.message_ids() == ["chunk-7-0", "chunk-7-1", "chunk-7-2"]
    commands = [parse(ChunkCommand, m.body) for m in publisher.messages]
    assert [(c.task_id, c.chunk_no) for c in commands] == [(7, 0), (7, 1), (7, 2)]


async def test_a_refused_chunk_fails_the_window_and_the_others_still_go_out() -> None:
    publisher = InMemoryPublisher(refuse=lambda _, message_id: message_id == "chunk-7-1")
    with pytest.raises(PublishFailed):
        await publish_chunks(publisher, 7, range(3))
    # the window is stored before it is published: the redelivered command republishes chunk 1
    assert publisher.message_ids() == ["chunk-7-0", "chunk-7-2"]


async def test_nothing_to_publish_publishes_nothing() -> None:
    publisher = InMemoryPublisher()
    await publish_chunks(publisher, 7, [])
    assert publisher.messages == []
