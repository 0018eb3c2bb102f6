"""The read-through endpoints' pure parts and the ActorDesk's metadata calls (no services)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import connectors as sdk
from connectors.memory import MemoryStore
from engine.api.agent_args import header_text
from engine.api.errors import ApiError
from engine.api.readthrough import (
    field_keys,
    field_value,
    fields_for_new_actor,
    shown_value,
)
from engine.observability.metrics import Metrics
from engine.sync import actors as actors_module
from engine.sync import connections
from engine.sync.actors import FIELDS_KEPT, ActorDesk
from tests.support.settings import memory_settings

PASSWORD = sdk.FieldMetadata("pin", type=sdk.FieldType.Password, default_value="0000")


def test_field_keys_are_strings_in_order_within_limits() -> None:
    assert field_keys({}) == []
    assert field_keys({"fieldkeys": ["b", "a", "b"]}) == ["b", "a", "b"]
    for bad in ("a", [1], [""], ["x" * 256], ["a\x00"], ["k"] * 501):
        with pytest.raises(ApiError) as refused:
            field_keys({"fieldkeys": bad})
        assert refused.value.status == 400


def test_a_password_value_never_shows() -> None:
    assert shown_value(PASSWORD, "1234") is None
    assert shown_value(sdk.FieldMetadata("name"), "Acme") == "Acme"
    assert shown_value(None, "Acme") == "Acme"
    hidden = field_value("pin", "pin", PASSWORD, "1234", "1234", to_crm=True, to_erp=False)
    assert (hidden["Value"], hidden["DisplayValue"]) == (None, None)
    listed = field_value(
        "city",
        "town",
        sdk.FieldMetadata("city", "City", type=sdk.FieldType.List, list_name="cities"),
        "OSL",
        "Oslo",
        to_crm=False,
        to_erp=True,
    )
    assert listed == {
        "DisplayName": "City",
        "CrmFieldKey": "town",
        "Value": "OSL",
        "DisplayValue": "Oslo",
        "SyncToCrm": False,
        "SyncToErp": True,
        "TableRight": None,
        "FieldProperties": {},
    }


def test_fields_for_a_new_actor_are_mandatory_ones_the_crm_does_not_fill() -> None:
    mandatory = sdk.FieldAccess.Mandatory
    metadata = [
        sdk.FieldMetadata("name", access=mandatory),
        sdk.FieldMetadata("note"),
        sdk.FieldMetadata("heading", type=sdk.FieldType.Label, access=mandatory),
        sdk.FieldMetadata("pin", type=sdk.FieldType.Password, access=mandatory, default_value="0"),
        sdk.FieldMetadata("terms", access=mandatory, default_value="30d", max_length=10),
    ]
    fields = fields_for_new_actor(metadata, ["name", "note"])
    assert [(f["FieldKey"], f["Rank"], f["DefaultValue"]) for f in fields] == [
        ("pin", 4, ""),
        ("terms", 5, "30d"),
    ]
    assert (fields[1]["MaxLength"], fields[1]["Access"]) == (10, "Mandatory")


def test_a_test_message_becomes_one_ascii_header_line() -> None:
    assert header_text("ok") == "ok"
    assert header_text("line one\r\nline two\ttab") == "line one line two tab"
    assert header_text("Ålesund") == "\\xc5lesund"
    assert len(header_text("x" * 1000)) == 300


@pytest.fixture
async def desk() -> AsyncIterator[tuple[ActorDesk, dict[int, MemoryStore]]]:
    names = {i: f"readthrough-{i}-{uuid.uuid4().hex[:8]}" for i in (0, 1, 2)}
    settings = memory_settings(
        "unused",
        "unused",
        names,
        overrides={
            1: {
                "metadata": {"Customer": {"city": {"type": "List", "list_name": "cities"}}},
                "lists": {"cities": {"OSL": "Oslo", "BGO": "Bergen"}},
            }
        },
    )
    opened = ActorDesk(settings, Metrics())  # an API-only process: opens on first use
    yield opened, {i: MemoryStore.named(name) for i, name in names.items()}
    await opened.close()
    for name in names.values():
        MemoryStore.drop(name)


async def test_the_desk_tests_describes_and_lists_through_the_gate(
    desk: tuple[ActorDesk, dict[int, MemoryStore]],
) -> None:
    actors, stores = desk
    assert (await actors.test(1)).ok
    stores[1].outage = "transient"
    tested = await actors.test(1)  # the memory connector reports, it does not raise
    assert not tested.ok and "unavailable" in tested.message
    stores[1].outage = None
    fields = await actors.fields(1, "Customer")
    assert [(f.key, f.type) for f in fields][-1] == ("city", sdk.FieldType.List)
    assert sdk.Capability.search in await actors.capabilities(1)
    assert await actors.list_texts(1, "cities", ["OSL", "XXX"]) == {"OSL": "Oslo"}
    with pytest.raises(sdk.PermanentError):
        await actors.fields(1, "Supplier")


async def test_field_metadata_is_read_once_a_minute_per_connection_and_type() -> None:
    names = {i: f"readthrough-{i}-{uuid.uuid4().hex[:8]}" for i in (0, 1, 2)}
    settings = memory_settings("unused", "unused", names)
    now = [1000.0]
    actors = ActorDesk(settings, Metrics(), clock=lambda: now[0])
    try:
        handle = await actors._handle(1)
        reads: list[str] = []
        original = handle.connector.fields

        async def counted(request: sdk.FieldsInput) -> sdk.FieldsResult:
            reads.append(request.actor_type)
            result: sdk.FieldsResult = await original(request)
            return result

        handle.connector.fields = counted
        first = await actors.fields(1, "Customer")
        now[0] += FIELDS_KEPT - 1
        assert await actors.fields(1, "Customer") == first
        assert reads == ["Customer"]  # the second came from the cache
        now[0] += 1
        await actors.fields(1, "Customer")
        assert reads == ["Customer", "Customer"]  # a minute on: read again
        with pytest.raises(sdk.PermanentError):  # a failed read is not kept
            await actors.fields(1, "Supplier")
        with pytest.raises(sdk.PermanentError):
            await actors.fields(1, "Supplier")
        assert reads.count("Supplier") == 2
    finally:
        await actors.close()
        for name in names.values():
            MemoryStore.drop(name)


async def test_a_connection_slow_to_open_holds_up_only_its_own_requests_and_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = {i: f"opening-{i}-{uuid.uuid4().hex[:8]}" for i in (0, 1, 2)}
    settings = memory_settings("unused", "unused", names, connection_options={1: {"timeout": 0.3}})
    hung = asyncio.Event()

    async def open_connector(conn: Any, *args: Any) -> Any:
        if conn.id == 1:  # an ERP that accepts the connection and never answers
            hung.set()
            await asyncio.Event().wait()
        return await connections.open_connector(conn, *args)

    monkeypatch.setattr(actors_module, "open_connector", open_connector)  # as actors imports it
    desk = ActorDesk(settings, Metrics())  # an API-only process: opens on first use
    try:
        stuck = asyncio.create_task(desk.test(1))
        await asyncio.wait_for(hung.wait(), 5)
        # ERP 2 opens and answers while ERP 1 is still opening
        assert (await asyncio.wait_for(desk.test(2), 5)).ok
        assert not stuck.done()
        with pytest.raises(sdk.TransientError, match=r"not connected within 0\.3s"):
            await asyncio.wait_for(stuck, 5)  # bounded by ERP 1's own timeout
    finally:
        await desk.close()
        for name in names.values():
            MemoryStore.drop(name)
