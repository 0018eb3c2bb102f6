"""The ErpSync read-through endpoints over real HTTP and PostgreSQL, with memory connectors.

Each reference page's sample request is posted verbatim, as JSON and as its DataContract XML;
its ids are unknown here, so the answer is the documented error. Then the same endpoints with
this test's own ids: field metadata (List, Password, Mandatory) comes from the memory
connector's ``metadata`` setting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from tests.e2e.api.test_access import LIMITED, access_settings
from tests.support.service import AUTH, Service, link

AGENT = "/api/v1/Agents/ErpSync"
JSON = {**AUTH, "Accept": "application/json; charset=utf-8"}
XML = {**AUTH, "Accept": "application/xml", "Content-Type": "application/xml; charset=utf-8"}
ERROR_KEYS = {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
CARRIER: dict[str, Any] = {"TableRight": None, "FieldProperties": {}}

# Each reference page's sample: its Accept-Language, its JSON body verbatim, the same as XML
# (SuperOfficeDocs/superoffice-docs docs/en/api/reference/restful/agent/ErpSync_Agent/ at commit
# 01caeba7, the version of the pages whose samples tests/e2e/api/test_links.py posts).
SAMPLES: dict[str, tuple[str, str, str]] = {
    "TestConnectionById": (
        "sv",
        '{\n  "ErpConnectionId": 841\n}',
        "<TestConnectionById><ErpConnectionId>841</ErpConnectionId></TestConnectionById>",
    ),
    # docs/api/api-reference/restful/agent/ErpSync_Agent/v1ErpSyncAgent_TestConnectionByConfig.md
    # (commit 240a4592); the XML as DataContract writes a StringDictionary.
    "TestConnectionByConfig": (
        "*",
        '{\n  "ErpConnectionId": 587,\n  "ConfigFields": {\n    "ConfigFields1": "quis",\n'
        '    "ConfigFields2": "quis"\n  }\n}',
        f'<TestConnectionByConfig xmlns:a="{ARRAYS}"><ErpConnectionId>587</ErpConnectionId>'
        "<ConfigFields><a:KeyValueOfstringstring><a:Key>ConfigFields1</a:Key>"
        "<a:Value>quis</a:Value></a:KeyValueOfstringstring><a:KeyValueOfstringstring>"
        "<a:Key>ConfigFields2</a:Key><a:Value>quis</a:Value></a:KeyValueOfstringstring>"
        "</ConfigFields></TestConnectionByConfig>",
    ),
    "GetFieldValuesFromCrm": (
        "sv",
        '{\n  "RecordId": 763,\n  "ActorTypeCrm": "Contact"\n}',
        "<GetFieldValuesFromCrm><RecordId>763</RecordId><ActorTypeCrm>Contact</ActorTypeCrm>"
        "</GetFieldValuesFromCrm>",
    ),
    "GetFieldValuesFromErp": (
        "fr,de,ru,zh",
        '{\n  "ErpConnectionId": 293,\n  "ActorTypeErp": "Customer",\n  "ErpKey": "placeat"\n}',
        "<GetFieldValuesFromErp><ErpConnectionId>293</ErpConnectionId>"
        "<ActorTypeErp>Customer</ActorTypeErp><ErpKey>placeat</ErpKey></GetFieldValuesFromErp>",
    ),
    "GetErpFieldValues": (
        "en",
        '{\n  "ErpConnectionId": 788,\n  "CrmActorType": "Contact",\n  "EntityId": 172,\n'
        '  "FieldKeys": [\n    "ipsa",\n    "labore"\n  ]\n}',
        f'<GetErpFieldValues xmlns:a="{ARRAYS}"><ErpConnectionId>788</ErpConnectionId>'
        "<CrmActorType>Contact</CrmActorType><EntityId>172</EntityId><FieldKeys>"
        "<a:string>ipsa</a:string><a:string>labore</a:string></FieldKeys></GetErpFieldValues>",
    ),
    "GetFieldsForNewErpActor": (
        "fr,de,ru,zh",
        '{\n  "ErpConnectionId": 222,\n  "ErpActorType": "Customer"\n}',
        "<GetFieldsForNewErpActor><ErpConnectionId>222</ErpConnectionId>"
        "<ErpActorType>Customer</ErpActorType></GetFieldsForNewErpActor>",
    ),
    "SupportsAdvancedSearch": (
        "sv",
        '{\n  "ErpConnectionId": 380,\n  "ErpActorType": "Customer"\n}',
        "<SupportsAdvancedSearch><ErpConnectionId>380</ErpConnectionId>"
        "<ErpActorType>Customer</ErpActorType></SupportsAdvancedSearch>",
    ),
}
# The documented 404 each sample gets here (none of its ids exists).
NOT_FOUND = {
    "TestConnectionById": "ErpConnectionId 841 is not a known connection",
    "TestConnectionByConfig": "ErpConnectionId 587 is not a known connection",
    "GetFieldValuesFromCrm": "Contact 763 not found in the CRM",
    "GetFieldValuesFromErp": "ErpConnectionId 293 is not a known connection",
    "GetErpFieldValues": "ErpConnectionId 788 is not a known connection",
    "GetFieldsForNewErpActor": "ErpConnectionId 222 is not a known connection",
    "SupportsAdvancedSearch": "ErpConnectionId 380 is not a known connection",
}
# ERP 1 describes its Customer fields; ERP 2's mail is a Password; the CRM names its name.
MEMORY = {
    "overrides": {
        0: {"metadata": {"Contact": {"name": {"display_name": "Company name"}}}},
        1: {
            "actor_types": {"Customer": ["name", "phone", "email", "city", "pin", "terms"]},
            "metadata": {
                "Customer": {
                    "name": {"access": "Mandatory", "display_name": "Customer name"},
                    "email": {"access": "Mandatory"},
                    "city": {"type": "List", "list_name": "cities"},
                    "pin": {"type": "Password", "access": "Mandatory", "default_value": "0000"},
                    "terms": {"access": "Mandatory", "default_value": "30d"},
                }
            },
            "lists": {"cities": {"OSL": "Oslo", "BGO": "Bergen"}},
        },
        2: {"metadata": {"Customer": {"mail": {"type": "Password"}}}},
    },
    # one failed call opens ERP 1's breaker (the failing-connection test)
    "connection_options": {1: {"breaker": {"failure_threshold": 1, "cooldown": 600}}},
}


@pytest.fixture
async def service(
    database: str,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
    db: asyncpg.Connection,
) -> AsyncIterator[Service]:
    """The front door (no workers) with user ``limited`` (connection 1 only); CRM contacts 1-2,
    customers A1-A2 on ERP 1 and B1 on ERP 2; contact 1 linked to A1 and B1."""
    for i in (1, 2):
        stores[0].put("Contact", str(i), {"name": f"Co {i}", "phone": f"{i}{i}", "city": "Oslo"})
        stores[1].put(
            "Customer",
            f"A{i}",
            {"name": f"A {i}", "phone": "1", "city": "OSL", "pin": "1234", "terms": "30d"},
        )
    stores[2].put("Customer", "B1", {"company": "B 1", "tel": "2", "mail": "secret@b"})
    await link(db, 1, "Contact", "1", {1: ("Customer", "A1"), 2: ("Customer", "B1")})
    settings = access_settings(database, broker_prefix, stores, rsa_key, MEMORY)
    async with Service(settings, engine=False) as running:
        yield running


async def post(
    service: Service, name: str, body: Any, headers: dict[str, str] = JSON
) -> tuple[int, Any]:
    response = await service.client.post(f"{AGENT}/{name}", json=body, headers=headers)
    return response.status, await response.json()


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_each_sample_request_gets_its_documented_answer_as_json_and_xml(
    service: Service, name: str
) -> None:
    language, body_json, body_xml = SAMPLES[name]
    as_json = await service.client.post(
        f"{AGENT}/{name}",
        data=body_json.encode(),
        headers={
            **AUTH,
            "Accept": "application/json; charset=utf-8",
            "Accept-Language": language,
            "Content-Type": "application/json; charset=utf-8",
        },
    )
    assert as_json.status == 404, await as_json.text()
    error = await as_json.json()
    assert set(error) == ERROR_KEYS
    assert (error["ErrorType"], error["ErrorMessage"]) == ("SoNotFoundException", NOT_FOUND[name])
    as_xml = await service.client.post(
        f"{AGENT}/{name}", data=body_xml.encode(), headers={**XML, "Accept-Language": language}
    )
    text = await as_xml.text()
    assert as_xml.status == 404, text
    assert as_xml.content_type == "application/xml"
    assert "<ErrorType>SoNotFoundException</ErrorType>" in text
    assert f"<ErrorMessage>{NOT_FOUND[name]}</ErrorMessage>" in text


async def test_test_connection_by_id_says_true_or_false_with_the_reason(
    service: Service, stores: dict[int, MemoryStore]
) -> None:
    response = await service.client.post(
        f"{AGENT}/TestConnectionById", json={"ErpConnectionId": 1}, headers=JSON
    )
    assert (response.status, await response.json()) == (200, True)
    assert response.headers["X-Connection-Test-Message"] == f"memory store {stores[1].name!r}"
    stores[1].outage = "permanent"
    response = await service.client.post(
        f"{AGENT}/TestConnectionById",
        data=b"<TestConnectionById><ErpConnectionId>1</ErpConnectionId></TestConnectionById>",
        headers=XML,
    )
    assert response.status == 200
    assert (await response.text()).endswith(">false</boolean>")
    assert "rejects the call" in response.headers["X-Connection-Test-Message"]
    assert await post(service, "TestConnectionById", {"ErpConnectionId": 2}) == (200, True)


async def test_field_values_from_erp_are_the_actors_mapped_fields_read_live(
    service: Service,
) -> None:
    status, values = await post(
        service,
        "GetFieldValuesFromErp",
        {"ErpConnectionId": 1, "ActorTypeErp": "Customer", "ErpKey": "A1"},
    )
    assert status == 200
    assert values == [
        {
            "DisplayName": "Customer name",
            "CrmFieldKey": "name",
            "Value": "A 1",
            "DisplayValue": "A 1",
            "SyncToCrm": True,
            "SyncToErp": True,
            **CARRIER,
            "ErpFieldKey": "name",
        },
        {
            "DisplayName": "phone",
            "CrmFieldKey": "phone",
            "Value": "1",
            "DisplayValue": "1",
            "SyncToCrm": False,
            "SyncToErp": True,
            **CARRIER,
            "ErpFieldKey": "phone",
        },
        {
            "DisplayName": "email",
            "CrmFieldKey": "email",
            "Value": None,  # blank
            "DisplayValue": None,
            "SyncToCrm": True,
            "SyncToErp": False,
            **CARRIER,
            "ErpFieldKey": "email",
        },
        {
            "DisplayName": "city",
            "CrmFieldKey": "city",
            "Value": "OSL",
            "DisplayValue": "Oslo",  # the list item's text
            "SyncToCrm": False,
            "SyncToErp": False,
            **CARRIER,
            "ErpFieldKey": "city",
        },
    ]
    # ERP 2's mail is a Password field: its value never leaves
    status, values = await post(
        service,
        "GetFieldValuesFromErp",
        {"ErpConnectionId": 2, "ActorTypeErp": 1, "ErpKey": "B1"},
    )
    assert status == 200
    assert {v["ErpFieldKey"]: v["Value"] for v in values} == {
        "company": "B 1",
        "tel": "2",
        "mail": None,
    }
    response = await service.client.post(
        f"{AGENT}/GetFieldValuesFromErp",
        data=b"<GetFieldValuesFromErp><ErpConnectionId>2</ErpConnectionId>"
        b"<ActorTypeErp>Customer</ActorTypeErp><ErpKey>B1</ErpKey></GetFieldValuesFromErp>",
        headers=XML,
    )
    text = await response.text()
    assert response.status == 200 and text.count("<ErpSyncFieldValue>") == 3, text
    assert "<ArrayOfErpSyncFieldValue" in text and "secret" not in text
    for body, message in [
        (
            {"ErpConnectionId": 1, "ActorTypeErp": "Customer", "ErpKey": "nope"},
            "Customer 'nope' not found on connection 1 (ERP one)",
        ),
        (
            {"ErpConnectionId": 1, "ActorTypeErp": "Supplier", "ErpKey": "A1"},
            "Connection 1 (ERP one) has no Supplier actor type",
        ),
    ]:
        status, error = await post(service, "GetFieldValuesFromErp", body)
        assert (status, error["ErrorType"], error["ErrorMessage"]) == (
            404,
            "SoNotFoundException",
            message,
        )


async def test_field_values_from_crm_are_the_fields_the_callers_connections_map(
    service: Service,
) -> None:
    body = {"RecordId": 1, "ActorTypeCrm": "Contact"}
    status, values = await post(service, "GetFieldValuesFromCrm", body)
    assert status == 200
    # ERP 1 maps name (both), phone (to_erp), email (to_crm), city (none); ERP 2 name
    # (to_erp), phone (both), email (to_erp)
    assert [
        (v["CrmFieldKey"], v["DisplayName"], v["Value"], v["SyncToCrm"], v["SyncToErp"])
        for v in values
    ] == [
        ("name", "Company name", "Co 1", True, True),
        ("phone", "phone", "11", True, True),
        ("email", "email", None, True, True),
        ("city", "city", "Oslo", False, False),
    ]
    # user "limited" sees connection 1's mapping only
    status, values = await post(
        service, "GetFieldValuesFromCrm", body, {**LIMITED, "Accept": "application/json"}
    )
    assert status == 200
    assert [(v["CrmFieldKey"], v["SyncToCrm"], v["SyncToErp"]) for v in values] == [
        ("name", True, True),
        ("phone", False, True),
        ("email", True, False),
        ("city", False, False),
    ]
    status, error = await post(service, "GetFieldValuesFromCrm", {**body, "ActorTypeCrm": "Sale"})
    assert (status, error["ErrorMessage"]) == (
        404,
        "No ERP connection maps the CRM actor type Sale",
    )
    status, error = await post(service, "GetFieldValuesFromCrm", {**body, "RecordId": 0})
    assert (status, error["ErrorMessage"]) == (400, "RecordId must be a positive id, got 0")


async def test_erp_field_values_are_the_linked_actors_values_in_the_order_asked(
    service: Service,
) -> None:
    body = {
        "ErpConnectionId": 1,
        "CrmActorType": "Contact",
        "EntityId": 1,
        "FieldKeys": ["terms", "name", "pin", "email", "name"],
    }
    # any field of the type, mapped or not; a Password's value never leaves; blank is null
    assert await post(service, "GetErpFieldValues", body) == (
        200,
        ["30d", "A 1", None, None, "A 1"],
    )
    assert await post(service, "GetErpFieldValues", {**body, "FieldKeys": []}) == (200, [])
    response = await service.client.post(
        f"{AGENT}/GetErpFieldValues",
        data=(
            f'<GetErpFieldValues xmlns:a="{ARRAYS}"><ErpConnectionId>2</ErpConnectionId>'
            "<CrmActorType>Contact</CrmActorType><EntityId>1</EntityId><FieldKeys>"
            "<a:string>tel</a:string><a:string>company</a:string></FieldKeys>"
            "</GetErpFieldValues>"
        ).encode(),
        headers=XML,
    )
    text = await response.text()
    assert response.status == 200, text
    assert "<ArrayOfstring" in text and "<string>2</string><string>B 1</string>" in text
    form = await service.client.post(
        f"{AGENT}/GetErpFieldValues",
        data="ErpConnectionId=1&CrmActorType=1&EntityId=1&FieldKeys=city&FieldKeys=phone",
        headers={**JSON, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (form.status, await form.json()) == (200, ["OSL", "1"])
    wrong: list[tuple[dict[str, Any], str]] = [
        ({"FieldKeys": ["name", "fax"]}, "FieldKeys[1] 'fax' is not a field of Customer on "),
        ({"EntityId": 2}, "Contact 2 is not linked on connection 1 (ERP one)"),
        ({"CrmActorType": "Person"}, "Connection 1 (ERP one) maps no ERP actor type to Person"),
    ]
    for changed, message in wrong:
        status, error = await post(service, "GetErpFieldValues", {**body, **changed})
        assert (status, error["ErrorType"]) == (404, "SoNotFoundException")
        assert error["ErrorMessage"].startswith(message)
    status, error = await post(service, "GetErpFieldValues", {**body, "FieldKeys": "name"})
    assert (status, error["ErrorMessage"]) == (400, "FieldKeys must be an array of field keys")


async def test_fields_for_a_new_erp_actor_are_the_mandatory_ones_the_mapping_leaves(
    service: Service,
) -> None:
    status, fields = await post(
        service, "GetFieldsForNewErpActor", {"ErpConnectionId": 1, "ErpActorType": "Customer"}
    )
    assert status == 200
    # name is Mandatory but filled from the CRM (to_erp); email is mapped to the CRM only
    assert [(f["FieldKey"], f["Rank"], f["DefaultValue"], f["FieldType"]) for f in fields] == [
        ("email", 3, "", "Text"),
        ("pin", 5, "", "Password"),  # a Password's default never leaves
        ("terms", 6, "30d", "Text"),
    ]
    assert fields[0] == {
        "FieldKey": "email",
        "Rank": 3,
        "DisplayName": "email",
        "DisplayDescription": "",
        "FieldType": "Text",
        "ListName": "",
        "DefaultValue": "",
        "MaxLength": 0,
        "Access": "Mandatory",
        "ShowInSearch": False,
        **CARRIER,
    }
    assert await post(
        service, "GetFieldsForNewErpActor", {"ErpConnectionId": 2, "ErpActorType": "Customer"}
    ) == (200, [])
    response = await service.client.post(
        f"{AGENT}/GetFieldsForNewErpActor",
        data=b"<GetFieldsForNewErpActor><ErpConnectionId>1</ErpConnectionId>"
        b"<ErpActorType>1</ErpActorType></GetFieldsForNewErpActor>",
        headers=XML,
    )
    text = await response.text()
    assert response.status == 200 and text.count("<FieldMetadata>") == 3, text
    assert "0000" not in text


async def test_advanced_search_is_the_connectors_search_capability(service: Service) -> None:
    body = {"ErpConnectionId": 1, "ErpActorType": "Customer"}
    assert await post(service, "SupportsAdvancedSearch", body) == (200, True)
    status, error = await post(
        service, "SupportsAdvancedSearch", {**body, "ErpActorType": "Partner"}
    )
    assert (status, error["ErrorMessage"]) == (
        404,
        "Connection 1 (ERP one) has no Partner actor type",
    )


async def test_a_restricted_caller_reads_only_through_its_connections(service: Service) -> None:
    headers = {**LIMITED, "Accept": "application/json"}
    for name, body in [
        ("TestConnectionById", {"ErpConnectionId": 2}),
        ("GetFieldValuesFromErp", {"ErpConnectionId": 2, "ActorTypeErp": 1, "ErpKey": "B1"}),
        (
            "GetErpFieldValues",
            {"ErpConnectionId": 2, "CrmActorType": 1, "EntityId": 1, "FieldKeys": ["tel"]},
        ),
        ("GetFieldsForNewErpActor", {"ErpConnectionId": 2, "ErpActorType": 1}),
        ("SupportsAdvancedSearch", {"ErpConnectionId": 2, "ErpActorType": 1}),
    ]:
        status, error = await post(service, name, body, headers)
        assert (status, error["ErrorType"]) == (403, "SoSecurityException"), name
        assert error["ErrorMessage"].endswith(" connection 2"), name
    assert await post(service, "TestConnectionById", {"ErpConnectionId": 1}, headers) == (
        200,
        True,
    )


async def test_a_failing_connection_is_a_clear_error_not_a_500(
    service: Service, stores: dict[int, MemoryStore]
) -> None:
    body = {"ErpConnectionId": 1, "ActorTypeErp": "Customer", "ErpKey": "A1"}
    stores[1].outage = "permanent"
    status, error = await post(service, "GetFieldValuesFromErp", body)
    assert set(error) == ERROR_KEYS
    assert (status, error["ErrorMessage"]) == (
        400,
        f"The connection refused the request: ERP one: memory store {stores[1].name!r} "
        "rejects the call",
    )
    stores[1].outage = "configuration"
    response = await service.client.post(
        f"{AGENT}/GetErpFieldValues",
        json={"ErpConnectionId": 1, "CrmActorType": 1, "EntityId": 1, "FieldKeys": ["name"]},
        headers=JSON,
    )
    error = await response.json()
    assert response.status == 503 and response.headers["Retry-After"]
    assert error["ErrorType"] == "ServiceUnavailableException"
    assert error["ErrorMessage"].startswith("The connection is unavailable: ERP one: memory")
    # that failure opened the breaker: the test is not even called, and says why
    stores[1].outage = None
    response = await service.client.post(
        f"{AGENT}/TestConnectionById", json={"ErpConnectionId": 1}, headers=JSON
    )
    assert (response.status, await response.json()) == (200, False)
    assert response.headers["X-Connection-Test-Message"].startswith(
        "ERP one: circuit open, not called (last error: memory store"
    )
    search = {"ErpConnectionId": 1, "ErpActorType": 1}
    # no connector call: the connector's class says it
    assert await post(service, "SupportsAdvancedSearch", search) == (200, True)
