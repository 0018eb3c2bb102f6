"""The chunk runner's parts without services: the two resync stages over in-memory connectors,
and the push units' publishes against the in-memory publisher."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from connectors.memory import MemoryStore
from engine.messaging.memory import InMemoryPublisher
from engine.messaging.topology import CHUNK_ROUTING_KEY, push_routing_key
from engine.store.keys import InternalKey, Link
from engine.store.results import FieldChange
from engine.sync.chunks import publish_units
from engine.sync.connections import Connections
from engine.sync.push_stage import PushStage
from engine.sync.records import Intents, SyncContext
from engine.sync.source_stage import SourceStage
from tests.support.settings import memory_settings


@pytest.fixture
async def stores() -> AsyncIterator[dict[int, MemoryStore]]:
    names = {i: f"unit-{i}-{uuid.uuid4().hex[:8]}" for i in (0, 1, 2)}
    yield {i: MemoryStore.named(name) for i, name in names.items()}
    for name in names.values():
        MemoryStore.drop(name)


@pytest.fixture
async def connections(stores: dict[int, MemoryStore]) -> AsyncIterator[Connections]:
    names = {i: store.name for i, store in stores.items()}
    opened = await Connections.open(memory_settings("unused", "unused", names))
    yield opened
    await opened.close()


KEY = InternalKey(1, "Contact", "c1")
LINKS = [Link(11, 1, 1, "Customer", "e1"), Link(12, 1, 2, "Customer", "k1")]


async def test_stage_one_writes_the_sources_to_crm_fields_and_forwards_the_record(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    stores[0].put("Contact", "c1", {"name": "Old", "phone": "1", "email": "old@crm"})
    stores[1].put("Customer", "e1", {"name": "New", "phone": "9", "email": "new@erp"})
    result = await SourceStage(connections).run(1, [KEY], LINKS)
    # name flows both ways and email to the CRM; phone flows only to the ERP
    assert stores[0].get("Contact", "c1") == {"name": "New", "phone": "1", "email": "new@erp"}
    assert result.forward == [1]
    assert result.crm_written == [1]
    assert sorted((c.crm_field, c.old_value, c.new_value) for c in result.changes) == [
        ("email", "old@crm", "new@erp"),
        ("name", "Old", "New"),
    ]
    assert stores[2].get("Customer", "k1") is None  # stage 1 pushes nothing


async def test_stage_one_does_not_forward_a_record_not_linked_to_the_source(
    connections: Connections,
) -> None:
    result = await SourceStage(connections).run(1, [KEY], [LINKS[1]])
    assert result.forward == []
    assert [(o.internal_key_id, o.status) for o in result.outcomes] == [(1, "not_linked")]


async def test_stage_two_writes_only_the_differing_fields_to_its_target(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    stores[0].put("Contact", "c1", {"name": "Acme", "phone": "55", "email": "a@crm"})
    stores[2].put("Customer", "k1", {"company": "Acme", "tel": "1", "mail": "x@erp"})
    result = await PushStage(connections).run(2, [KEY], [LINKS[1]])
    assert stores[2].get("Customer", "k1") == {"company": "Acme", "tel": "55", "mail": "a@crm"}
    assert [(o.connection_id, o.status, o.changed_fields) for o in result.outcomes] == [
        (2, "updated", 2)
    ]
    assert stores[1].get("Customer", "e1") is None  # only its own target
    again = await PushStage(connections).run(2, [KEY], [LINKS[1]])
    assert [o.status for o in again.outcomes] == ["unchanged"]


async def test_a_write_whose_commit_was_lost_is_logged_from_its_intent_on_the_next_run(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    stores[0].put("Contact", "c1", {"name": "Acme", "phone": "55", "email": "a@crm"})
    stores[2].put("Customer", "k1", {"company": "Acme", "tel": "1", "mail": "x@erp"})
    recorded: list[FieldChange] = []

    async def record(changes: Sequence[FieldChange]) -> None:
        recorded.extend(changes)

    lost = await PushStage(connections).run(2, [KEY], [LINKS[1]], intents=Intents(record))
    # ... the run's commit never happened (worker killed, channel closed); the redelivery:
    again = await PushStage(connections).run(2, [KEY], [LINKS[1]], intents=Intents(None, recorded))
    assert sorted((c.erp_field, c.old_value, c.new_value) for c in recorded) == [
        ("mail", "x@erp", "a@crm"),
        ("tel", "1", "55"),
    ]
    assert again.changes == lost.changes  # logged once, by the run that commits
    assert [(o.status, o.changed_fields) for o in again.outcomes] == [("updated", 2)]
    # Without the intents the change would have been recorded unchanged, without a row.
    blind = await PushStage(connections).run(2, [KEY], [LINKS[1]])
    assert ([o.status for o in blind.outcomes], blind.changes) == (["unchanged"], [])


async def test_stage_one_logs_a_crm_write_whose_commit_was_lost_from_its_intent(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    stores[0].put("Contact", "c1", {"name": "Old", "phone": "1", "email": "old@crm"})
    stores[1].put("Customer", "e1", {"name": "New", "phone": "9", "email": "new@erp"})
    recorded: list[FieldChange] = []

    async def record(changes: Sequence[FieldChange]) -> None:
        recorded.extend(changes)

    lost = await SourceStage(connections).run(1, [KEY], LINKS, intents=Intents(record))
    again = await SourceStage(connections).run(1, [KEY], LINKS, intents=Intents(None, recorded))
    assert len(recorded) == 2
    assert again.changes == lost.changes
    assert again.crm_written == [1]


async def test_a_conflicts_winner_is_kept_by_the_intent_and_logged_from_it(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    """A Sync task's conflict (phone changed on the CRM and on ERP 2 since they agreed on "0";
    crm_wins): the run that wrote it died before its commit; the redelivery logs the write from
    its intent, naming the winner as the run itself would have."""
    stores[0].put("Contact", "c1", {"name": "Acme", "phone": "55", "email": "a@crm"})
    stores[2].put("Customer", "k1", {"company": "Acme", "tel": "1", "mail": "a@crm"})
    agreed = {1: {"name": "Acme", "phone": "0", "email": "a@crm"}}
    recorded: list[FieldChange] = []

    async def record(changes: Sequence[FieldChange]) -> None:
        recorded.extend(changes)

    def sync() -> SyncContext:
        return SyncContext(settle=True, baselines={k: dict(v) for k, v in agreed.items()})

    lost = await PushStage(connections).run(
        2, [KEY], [LINKS[1]], intents=Intents(record), sync=sync()
    )
    assert [(c.erp_field, c.new_value, c.conflict_winner) for c in lost.changes] == [
        ("tel", "55", "crm")
    ]
    assert [c.conflict_winner for c in recorded] == ["crm"]
    again = await PushStage(connections).run(
        2, [KEY], [LINKS[1]], intents=Intents(None, recorded), sync=sync()
    )
    assert again.changes == lost.changes


async def test_stage_one_keeps_the_winner_in_the_intent_of_a_crm_write(
    stores: dict[int, MemoryStore],
) -> None:
    """The same through stage 1: name changed on both sides, erp_wins writes ERP 1's to the CRM."""
    names = {i: store.name for i, store in stores.items()}
    name = {"crm": "name", "direction": "both", "conflict": "erp_wins"}
    mapping = [{"erp": "Customer", "crm": "Contact", "fields": {"name": name}}]
    settings = memory_settings(
        "unused", "unused", names, connection_options={1: {"actor_types": mapping}}
    )
    stores[0].put("Contact", "c1", {"name": "CRM name", "phone": "1", "email": "a@crm"})
    stores[1].put("Customer", "e1", {"name": "ERP name", "phone": "1", "email": "a@crm"})
    recorded: list[FieldChange] = []

    async def record(changes: Sequence[FieldChange]) -> None:
        recorded.extend(changes)

    def sync() -> SyncContext:
        return SyncContext(settle=True, baselines={1: {"name": "Old name"}})

    connections = await Connections.open(settings)
    try:
        stage = SourceStage(connections)
        lost = await stage.run(1, [KEY], LINKS, intents=Intents(record), sync=sync())
        again = await stage.run(1, [KEY], LINKS, intents=Intents(None, recorded), sync=sync())
    finally:
        await connections.close()
    assert [(c.crm_field, c.new_value, c.conflict_winner) for c in recorded] == [
        ("name", "ERP name", "erp")
    ]
    assert again.changes == lost.changes == recorded


async def test_push_units_go_to_their_targets_queues_and_refusals_are_reported() -> None:
    publisher = InMemoryPublisher(
        push_targets=[1, 2], refuse=lambda _, message_id: message_id == "chunk-5-8"
    )
    published, failed = await publish_units(publisher, 5, [(7, 1), (8, 2), (9, 3)])
    assert published == [7, 9]  # unit 8 is left to the sweeper
    assert len(failed) == 1
    # target 3 has no push queue here (removed from the configuration): the chunk queue
    assert [(m.routing_key, m.message_id) for m in publisher.messages] == [
        (push_routing_key(1), "chunk-5-7"),
        (CHUNK_ROUTING_KEY, "chunk-5-9"),
    ]
