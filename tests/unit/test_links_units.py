"""The link endpoints' pure parts and the ActorDesk over memory connectors (no services)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

import connectors as sdk
from connectors.memory import MemoryStore
from engine.api.agent_args import crm_type_argument, erp_type_argument
from engine.api.errors import ApiError
from engine.api.links import _chosen_values, connection_guid
from engine.api.xmlbody import xml_arguments
from engine.observability.metrics import Metrics
from engine.settings import Settings
from engine.store.keys import InternalKey
from engine.sync.actors import ActorDesk
from engine.sync.connections import Connections
from engine.sync.push_stage import PushStage
from tests.support.settings import memory_settings


@pytest.fixture
async def stores() -> AsyncIterator[dict[int, MemoryStore]]:
    names = {i: f"links-{i}-{uuid.uuid4().hex[:8]}" for i in (0, 1, 2)}
    yield {i: MemoryStore.named(name) for i, name in names.items()}
    for name in names.values():
        MemoryStore.drop(name)


@pytest.fixture
def settings(stores: dict[int, MemoryStore]) -> Settings:
    names = {i: store.name for i, store in stores.items()}
    return memory_settings("unused", "unused", names)


def test_actor_types_bind_by_name_in_any_casing_or_by_number() -> None:
    assert crm_type_argument({"crmactortype": "contact"}) == "Contact"
    assert crm_type_argument({"crmactortype": 2}) == "Person"
    assert crm_type_argument({"crmactortype": "1"}) == "Contact"
    assert crm_type_argument({"crmactortype": 1.0}) == "Contact"
    assert erp_type_argument({"erpactortype": "SUPPLIER"}) == "Supplier"
    for bad in ("Company", 9, "", None, True):
        with pytest.raises(ApiError) as refused:
            crm_type_argument({"crmactortype": bad})
        assert refused.value.status == 400


def test_xml_binds_object_arrays_wrapped_or_repeated_and_maps_both_ways() -> None:
    wrapped = xml_arguments(
        b"<R><FieldValues><ErpSyncFieldValue><CrmFieldKey>name</CrmFieldKey><Value>x</Value>"
        b"<SyncToCrm>true</SyncToCrm></ErpSyncFieldValue><ErpSyncFieldValue><Value i:nil='true'"
        b" xmlns:i='http://www.w3.org/2001/XMLSchema-instance'/></ErpSyncFieldValue></FieldValues>"
        b"<M xmlns:a='urn:arrays'><a:KeyValueOfstringstring><a:Key>k</a:Key><a:Value>v</a:Value>"
        b"</a:KeyValueOfstringstring></M></R>",
        (),
        {"fieldvalues", "m"},
        objects={"fieldvalues"},
        maps={"m"},
    )
    assert wrapped == {
        "fieldvalues": [
            {"crmfieldkey": "name", "value": "x", "synctocrm": "true"},
            {"value": None},
        ],
        "m": {"k": "v"},
    }
    repeated = xml_arguments(
        b"<R><FieldValues><Value>a</Value></FieldValues><FieldValues><Value>b</Value>"
        b"</FieldValues><M><k1>v1</k1><k2>v2</k2></M></R>",
        (),
        {"fieldvalues", "m"},
        objects={"fieldvalues"},
        maps={"m"},
    )
    assert repeated == {
        "fieldvalues": [{"value": "a"}, {"value": "b"}],
        "m": {"k1": "v1", "k2": "v2"},
    }


def test_xml_object_items_bind_a_nested_element_as_an_object_like_json() -> None:
    """An ErpSyncFieldValue may carry a property the endpoint does not know, with elements
    inside (the schema allows more properties): bound as an object, as JSON would bind it, so
    the endpoint ignores it (and refuses it where it expects a value), instead of a 400."""
    bound = xml_arguments(
        b"<R><FieldValues><Item><Value>v</Value><Extra><A>1</A></Extra></Item></FieldValues>"
        b"<FieldValues><Item><Value>w</Value></Item></FieldValues></R>",
        (),
        {"fieldvalues"},
        objects={"fieldvalues"},
    )
    assert bound == {"fieldvalues": [{"value": "v", "extra": {}}, {"value": "w"}]}


def test_chosen_values_go_to_the_side_chosen(settings: Settings) -> None:
    mapping = settings.connections[1].actor_types[0]  # ERP 2: company, tel, mail
    to_crm, to_erp = _chosen_values(
        mapping,
        [
            {"crmfieldkey": "name", "value": "N", "synctocrm": True, "synctoerp": False},
            {"crmfieldkey": "phone", "value": "P", "synctocrm": "false", "synctoerp": "true"},
            {"crmfieldkey": "email", "value": "E"},  # nothing chosen: left alone
        ],
    )
    assert (to_crm, to_erp) == ({"name": "N"}, {"tel": "P"})
    with pytest.raises(ApiError) as refused:
        _chosen_values(mapping, [{"crmfieldkey": "fax", "synctocrm": True}])
    assert refused.value.status == 404


def test_connection_guids_are_stable_and_distinct(settings: Settings) -> None:
    first, second = settings.connections
    assert connection_guid(first) == connection_guid(first.model_copy())
    assert connection_guid(first) != connection_guid(second)
    assert str(uuid.UUID(connection_guid(first))) == connection_guid(first)


async def test_the_desk_creates_from_the_crm_reads_and_writes_only_what_differs(
    settings: Settings, stores: dict[int, MemoryStore]
) -> None:
    stores[0].put("Contact", "7", {"name": "Seven", "phone": "77", "email": "7@crm"})
    desk = ActorDesk(settings, Metrics())  # an API-only process: opens on first use
    try:
        created = await desk.create_from_crm(1, "Contact", "7", "Customer", {"city": "Oslo"}, "k")
        assert created is not None
        # ERP 1's to-ERP fields (name both, phone to_erp) and the given city
        assert stores[1].get("Customer", created.key) == {
            "name": "Seven",
            "phone": "77",
            "city": "Oslo",
        }
        assert await desk.create_from_crm(1, "Contact", "8", "Customer", {}, "k8") is None
        read = await desk.read(1, "Customer", created.key, ["name"])
        assert read is not None and read.fields["name"] == "Seven"
        assert await desk.read(1, "Customer", "nope", ["name"]) is None
        changed = await desk.write(1, "Customer", created.key, {"name": "Seven", "phone": "70"})
        assert changed == {"phone": ("77", "70")}
        with pytest.raises(sdk.PermanentError):
            await desk.create_from_crm(1, "Person", "7", "Customer", {}, "k")
    finally:
        await desk.close()


async def test_a_push_leaves_a_broken_link_alone_even_with_create_missing(
    settings: Settings, stores: dict[int, MemoryStore]
) -> None:
    erp2 = settings.connections[1]
    mapping = erp2.actor_types[0].model_copy(update={"create_missing": True})
    settings = settings.model_copy(
        update={
            "connections": [
                settings.connections[0],
                erp2.model_copy(update={"actor_types": [mapping]}),
            ]
        }
    )
    stores[0].put("Contact", "c1", {"name": "Acme", "phone": "1", "email": "a@crm"})
    stores[0].put("Contact", "c2", {"name": "Beta", "phone": "2", "email": "b@crm"})
    connections = await Connections.open(settings)
    try:
        keys = [InternalKey(1, "Contact", "c1"), InternalKey(2, "Contact", "c2")]
        result = await PushStage(connections).run(2, keys, [], broken={1})
    finally:
        await connections.close()
    statuses = {o.internal_key_id: o.status for o in result.outcomes}
    assert statuses == {1: "not_linked", 2: "created"}
    assert stores[2].creates == 1
