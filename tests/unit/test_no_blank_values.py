"""The NoBlankValues rule: a blank value (None or "") never overwrites a non-blank one, at
either hop (source -> CRM in stage 1, CRM -> target in stage 2), over in-memory connectors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from connectors.memory import MemoryStore
from engine.mapping import values as mp
from engine.messaging.commands import ResyncCommand, parse
from engine.store.keys import InternalKey, Link
from engine.sync.connections import Connections
from engine.sync.push_stage import PushStage
from engine.sync.records import SKIPPED_NOTE
from engine.sync.source_stage import SourceStage
from tests.support.settings import memory_settings


@pytest.fixture
async def stores() -> AsyncIterator[dict[int, MemoryStore]]:
    names = {i: f"unit-nb-{i}-{uuid.uuid4().hex[:8]}" for i in (0, 1, 2)}
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


def test_blank_is_none_or_the_empty_string_and_whitespace_is_a_value() -> None:
    assert mp.is_blank(None) and mp.is_blank("")
    assert not mp.is_blank(" ") and not mp.is_blank("0")


def test_only_blanks_over_non_blank_values_are_left_out() -> None:
    current = {"a": "x", "b": None, "c": "", "d": "y", "e": "z"}
    desired = {"a": "", "b": None, "c": "", "d": "new", "e": None, "f": None}
    kept, skipped = mp.without_blank_overwrites(current, desired)
    assert skipped == ["a", "e"]
    assert kept == {"b": None, "c": "", "d": "new", "f": None}
    assert mp.diff(current, kept) == {"d": ("y", "new")}


async def test_stage_one_keeps_a_non_blank_crm_value_and_logs_the_skip(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    stores[0].put("Contact", "c1", {"name": "Acme", "phone": "1", "email": "a@crm"})
    stores[1].put("Customer", "e1", {"name": "Acme Ltd", "phone": "9", "email": ""})
    with capture_logs() as logs:
        result = await SourceStage(connections).run(1, [KEY], LINKS, no_blank_values=True)
    # email flows to the CRM and is blank at the source: left alone; name still changes
    assert stores[0].get("Contact", "c1") == {"name": "Acme Ltd", "phone": "1", "email": "a@crm"}
    assert [(c.crm_field, c.new_value) for c in result.changes] == [("name", "Acme Ltd")]
    [outcome] = result.outcomes
    assert (outcome.status, outcome.changed_fields) == ("updated", 1)
    assert outcome.error == SKIPPED_NOTE + "email"
    skipped = [e for e in logs if e["event"] == "blank source values not written"]
    assert [(e["internal_key"], e["fields"]) for e in skipped] == [(1, ["email"])]


async def test_stage_one_without_the_flag_blanks_the_crm_value(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    stores[0].put("Contact", "c1", {"name": "Acme", "phone": "1", "email": "a@crm"})
    stores[1].put("Customer", "e1", {"name": "Acme", "phone": "9", "email": ""})
    result = await SourceStage(connections).run(1, [KEY], LINKS)
    assert stores[0].get("Contact", "c1") == {"name": "Acme", "phone": "1", "email": ""}
    assert [(c.crm_field, c.old_value, c.new_value) for c in result.changes] == [
        ("email", "a@crm", "")
    ]


async def test_stage_two_keeps_non_blank_target_values_only_with_the_flag(
    stores: dict[int, MemoryStore], connections: Connections
) -> None:
    stores[0].put("Contact", "c1", {"name": "Acme", "phone": None, "email": "a@crm"})
    stores[2].put("Customer", "k1", {"company": "Acme", "tel": "555", "mail": "old@erp"})
    kept = await PushStage(connections).run(2, [KEY], [LINKS[1]], no_blank_values=True)
    assert stores[2].get("Customer", "k1") == {"company": "Acme", "tel": "555", "mail": "a@crm"}
    assert [(c.erp_field, c.new_value) for c in kept.changes] == [("mail", "a@crm")]
    assert [(o.status, o.error) for o in kept.outcomes] == [("updated", SKIPPED_NOTE + "tel")]

    unchanged = await PushStage(connections).run(2, [KEY], [LINKS[1]], no_blank_values=True)
    assert unchanged.changes == []
    assert [(o.status, o.error) for o in unchanged.outcomes] == [
        ("unchanged", SKIPPED_NOTE + "tel")
    ]

    blanked = await PushStage(connections).run(2, [KEY], [LINKS[1]])
    assert stores[2].get("Customer", "k1") == {"company": "Acme", "tel": None, "mail": "a@crm"}
    assert [(c.erp_field, c.old_value, c.new_value) for c in blanked.changes] == [
        ("tel", "555", None)
    ]


def test_the_flag_travels_in_the_command_and_absent_means_false() -> None:
    assert parse(ResyncCommand, b'{"InternalKeyIds": [1]}').no_blank_values is None
    command = parse(ResyncCommand, b'{"InternalKeyIds": [1], "noblankvalues": true}')
    assert command.no_blank_values is True
    assert command.as_request() == {
        "ErpConnectionId": 0,
        "InternalKeyIds": [1],
        "NoBlankValues": True,
    }
    assert b'"NoBlankValues":true' in command.to_body()
    assert "NoBlankValues" not in parse(ResyncCommand, b"{}").as_request()
