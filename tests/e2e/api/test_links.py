"""The ErpSync link endpoints and connection views over real HTTP and PostgreSQL.

Each reference page's sample request is posted verbatim, as JSON and as its DataContract XML;
its ids are unknown here, so the answer is the documented error (or, for the record view, the
record unlinked everywhere). Then the same endpoints with this test's own ids.
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
JSON = {**AUTH, "Accept": "application/json; charset=utf-8", "Accept-Language": "sv"}
XML = {**AUTH, "Accept": "application/xml", "Content-Type": "application/xml; charset=utf-8"}
ERROR_KEYS = {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"

# The sample request body of each reference page (JSON, verbatim) and the same as XML.
SAMPLES: dict[str, tuple[str, str]] = {
    "CreateActorLink": (
        '{\n  "ErpConnectionId": 807,\n  "CrmRecordId": 333,\n  "CrmActorType": "Contact",\n'
        '  "ErpKey": "sunt",\n  "ErpActorType": "Customer"\n}',
        "<CreateActorLink><ErpConnectionId>807</ErpConnectionId><CrmRecordId>333</CrmRecordId>"
        "<CrmActorType>Contact</CrmActorType><ErpKey>sunt</ErpKey>"
        "<ErpActorType>Customer</ErpActorType></CreateActorLink>",
    ),
    "BreakActorLink": (
        '{\n  "ErpConnectionId": 445,\n  "CrmRecordId": 629,\n  "CrmActorType": "Contact"\n}',
        "<BreakActorLink><ErpConnectionId>445</ErpConnectionId><CrmRecordId>629</CrmRecordId>"
        "<CrmActorType>Contact</CrmActorType></BreakActorLink>",
    ),
    "ConnectActor": (
        '{\n  "ErpConnectionId": 236,\n  "CrmRecordId": 368,\n  "CrmActorType": "Contact",\n'
        '  "ErpKey": "distinctio",\n  "ErpActorType": "Customer",\n  "FieldValues": [\n'
        '    {\n      "DisplayName": "Turcotte Inc and Sons",\n      "CrmFieldKey": "dolores",\n'
        '      "Value": "at",\n      "DisplayValue": "asperiores",\n      "SyncToCrm": false,\n'
        '      "SyncToErp": true\n    },\n'
        '    {\n      "DisplayName": "Turcotte Inc and Sons",\n      "CrmFieldKey": "dolores",\n'
        '      "Value": "at",\n      "DisplayValue": "asperiores",\n      "SyncToCrm": false,\n'
        '      "SyncToErp": true\n    }\n  ]\n}',
        "<ConnectActor><ErpConnectionId>236</ErpConnectionId><CrmRecordId>368</CrmRecordId>"
        "<CrmActorType>Contact</CrmActorType><ErpKey>distinctio</ErpKey>"
        "<ErpActorType>Customer</ErpActorType><FieldValues>"
        + "<ErpSyncFieldValue><DisplayName>Turcotte Inc and Sons</DisplayName>"
        "<CrmFieldKey>dolores</CrmFieldKey><Value>at</Value><DisplayValue>asperiores"
        "</DisplayValue><SyncToCrm>false</SyncToCrm><SyncToErp>true</SyncToErp>"
        "</ErpSyncFieldValue>" * 2 + "</FieldValues></ConnectActor>",
    ),
    # docs/api/api-reference/restful/agent/ErpSync_Agent/v1ErpSyncAgent_TryConnectActor.md
    # (commit 6bcf0449); the XML as the SOAP page's ConnectActor writes the same arguments.
    "TryConnectActor": (
        '{\n  "ErpConnectionId": 113,\n  "CrmRecordId": 1000,\n  "CrmActorType": "Contact",\n'
        '  "ErpKey": "quaerat",\n  "ErpActorType": "Customer",\n  "FieldValues": [\n'
        '    {\n      "DisplayName": "Heller, Will and Bogan",\n      "CrmFieldKey": "ipsam",\n'
        '      "Value": "adipisci",\n      "DisplayValue": "iure",\n      "SyncToCrm": false,\n'
        '      "SyncToErp": true\n    },\n'
        '    {\n      "DisplayName": "Heller, Will and Bogan",\n      "CrmFieldKey": "ipsam",\n'
        '      "Value": "adipisci",\n      "DisplayValue": "iure",\n      "SyncToCrm": false,\n'
        '      "SyncToErp": true\n    }\n  ]\n}',
        "<TryConnectActor><ErpConnectionId>113</ErpConnectionId><CrmRecordId>1000</CrmRecordId>"
        "<CrmActorType>Contact</CrmActorType><ErpKey>quaerat</ErpKey>"
        "<ErpActorType>Customer</ErpActorType><FieldValues>"
        + "<ErpSyncFieldValue><DisplayName>Heller, Will and Bogan</DisplayName>"
        "<CrmFieldKey>ipsam</CrmFieldKey><Value>adipisci</Value><DisplayValue>iure"
        "</DisplayValue><SyncToCrm>false</SyncToCrm><SyncToErp>true</SyncToErp>"
        "</ErpSyncFieldValue>" * 2 + "</FieldValues></TryConnectActor>",
    ),
    "CreateErpActorFromCrm": (
        '{\n  "ConnectionId": 747,\n  "CrmEntityId": 924,\n  "ErpActorType": "Customer",\n'
        '  "CrmActorType": "Contact",\n  "ErpFieldKeyValues": {\n'
        '    "ErpFieldKeyValues1": "non",\n    "ErpFieldKeyValues2": "saepe"\n  }\n}',
        f'<CreateErpActorFromCrm xmlns:a="{ARRAYS}"><ConnectionId>747</ConnectionId>'
        "<CrmEntityId>924</CrmEntityId><ErpActorType>Customer</ErpActorType>"
        "<CrmActorType>Contact</CrmActorType><ErpFieldKeyValues>"
        "<a:KeyValueOfstringstring><a:Key>ErpFieldKeyValues1</a:Key><a:Value>non</a:Value>"
        "</a:KeyValueOfstringstring><a:KeyValueOfstringstring><a:Key>ErpFieldKeyValues2"
        "</a:Key><a:Value>saepe</a:Value></a:KeyValueOfstringstring></ErpFieldKeyValues>"
        "</CreateErpActorFromCrm>",
    ),
    "GetConnectionsAndDisplayFields": (
        '{\n  "CrmActorType": "Contact",\n  "EntityId": 753\n}',
        "<GetConnectionsAndDisplayFields><CrmActorType>Contact</CrmActorType>"
        "<EntityId>753</EntityId></GetConnectionsAndDisplayFields>",
    ),
    "GetAllConnections": (
        '{\n  "IncludeDeleted": false\n}',
        "<GetAllConnections><IncludeDeleted>false</IncludeDeleted></GetAllConnections>",
    ),
    "GetConnection": (
        '{\n  "ErpConnectionId": 110\n}',
        "<GetConnection><ErpConnectionId>110</ErpConnectionId></GetConnection>",
    ),
    "GetErpSyncConnectionSummary": (
        '{\n  "ErpSyncConnectionId": 140\n}',
        "<GetErpSyncConnectionSummary><ErpSyncConnectionId>140</ErpSyncConnectionId>"
        "</GetErpSyncConnectionSummary>",
    ),
    "GetActorTypeMapping": (
        '{\n  "ErpConnectionId": 88,\n  "ActorType": "Customer"\n}',
        "<GetActorTypeMapping><ErpConnectionId>88</ErpConnectionId>"
        "<ActorType>Customer</ActorType></GetActorTypeMapping>",
    ),
    "ToggleErpConnectionActive": (
        '{\n  "ErpConnectionId": 155\n}',
        "<ToggleErpConnectionActive><ErpConnectionId>155</ErpConnectionId>"
        "</ToggleErpConnectionActive>",
    ),
    "GetCrmActorType": (
        '{\n  "ErpConnectionId": 870,\n  "ErpActorType": "Customer"\n}',
        "<GetCrmActorType><ErpConnectionId>870</ErpConnectionId>"
        "<ErpActorType>Customer</ErpActorType></GetCrmActorType>",
    ),
}
# The connection id each sample names (none is configured here: 404 SoNotFoundException).
UNKNOWN = {
    "CreateActorLink": "ErpConnectionId 807",
    "BreakActorLink": "ErpConnectionId 445",
    "ConnectActor": "ErpConnectionId 236",
    "TryConnectActor": "ErpConnectionId 113",
    "CreateErpActorFromCrm": "ConnectionId 747",
    "GetConnection": "ErpConnectionId 110",
    "GetErpSyncConnectionSummary": "ErpSyncConnectionId 140",
    "GetActorTypeMapping": "ErpConnectionId 88",
    "GetCrmActorType": "ErpConnectionId 870",
    "ToggleErpConnectionActive": "ErpConnectionId 155",
}


@pytest.fixture
async def service(
    database: str,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
    db: asyncpg.Connection,
) -> AsyncIterator[Service]:
    """The front door (no workers) with user ``limited`` (connection 1 only); CRM contacts 1-3,
    customers A1-A3 on ERP 1 and B1-B3 on ERP 2; contact 1 linked to A1 and B1."""
    for i in (1, 2, 3):
        stores[0].put("Contact", str(i), {"name": f"Co {i}", "phone": f"{i}{i}", "email": f"{i}@c"})
        stores[1].put("Customer", f"A{i}", {"name": f"A {i}", "phone": "1", "email": "a@1"})
        stores[2].put("Customer", f"B{i}", {"company": f"B {i}", "tel": "2", "mail": "b@2"})
    await link(db, 1, "Contact", "1", {1: ("Customer", "A1"), 2: ("Customer", "B1")})
    settings = access_settings(database, broker_prefix, stores, rsa_key)
    async with Service(settings, engine=False) as running:
        yield running


async def post(service: Service, name: str, body: Any, headers: dict[str, str] = JSON) -> Any:
    response = await service.client.post(f"{AGENT}/{name}", json=body, headers=headers)
    return response.status, await response.json() if response.status != 204 else None


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_each_sample_request_gets_its_documented_answer_as_json_and_xml(
    service: Service, name: str
) -> None:
    body_json, body_xml = SAMPLES[name]
    as_json = await service.client.post(
        f"{AGENT}/{name}",
        data=body_json.encode(),
        headers={**JSON, "Content-Type": "application/json; charset=utf-8"},
    )
    as_xml = await service.client.post(f"{AGENT}/{name}", data=body_xml.encode(), headers=XML)
    text = await as_xml.text()
    if name in UNKNOWN:
        assert as_json.status == 404, await as_json.text()
        error = await as_json.json()
        assert set(error) == ERROR_KEYS
        assert error["ErrorType"] == "SoNotFoundException"
        assert error["ErrorMessage"] == f"{UNKNOWN[name]} is not a known connection"
        assert as_xml.status == 404, text
        assert as_xml.content_type == "application/xml"
        assert "<ErrorType>SoNotFoundException</ErrorType>" in text
        assert f"{UNKNOWN[name]} is not a known connection" in text
    elif name == "GetAllConnections":
        assert as_json.status == 200
        assert [c["ErpConnectionId"] for c in await as_json.json()] == [1, 2, 589]
        assert as_xml.status == 200, text
        assert text.count("<ErpConnection>") == 3
    else:  # GetConnectionsAndDisplayFields: contact 753 is linked nowhere
        assert as_json.status == 200
        data = await as_json.json()
        assert [(c["ErpConnectionId"], c["Connected"]) for c in data] == [(1, False), (2, False)]
        assert as_xml.status == 200, text
        assert text.count("<ErpConnectionData>") == 2
        assert "<Connected>false</Connected>" in text


async def test_linking_an_actor_linked_to_another_record_is_refused(
    service: Service, db: asyncpg.Connection
) -> None:
    # actor A1 is contact 1's on ERP 1: contact 2 may not have it
    taken = {
        "ErpConnectionId": 1,
        "CrmRecordId": 2,
        "CrmActorType": "Contact",
        "ErpKey": "A1",
        "ErpActorType": "Customer",
    }
    status, error = await post(service, "CreateActorLink", taken)
    assert status == 409
    assert set(error) == ERROR_KEYS
    assert error["ErrorType"] == "ConflictException"
    assert (
        "'A1' on connection 1 (ERP one) is already linked to another record"
        in (error["ErrorMessage"])
    )
    status, error = await post(service, "ConnectActor", taken)
    assert status == 409 and error["ErrorType"] == "ConflictException"
    as_xml = await service.client.post(
        f"{AGENT}/CreateActorLink",
        data=(
            b"<CreateActorLink><ErpConnectionId>1</ErpConnectionId><CrmRecordId>2</CrmRecordId>"
            b"<CrmActorType>Contact</CrmActorType><ErpKey>A1</ErpKey>"
            b"<ErpActorType>Customer</ErpActorType></CreateActorLink>"
        ),
        headers=XML,
    )
    assert as_xml.status == 409
    assert "<ErrorType>ConflictException</ErrorType>" in await as_xml.text()
    assert await db.fetchval("SELECT count(*) FROM external_keys WHERE erp_key = 'A1'") == 1


async def test_a_record_links_to_one_actor_per_connection(
    service: Service, db: asyncpg.Connection
) -> None:
    other = {
        "ErpConnectionId": 2,
        "CrmRecordId": 1,
        "CrmActorType": "Contact",
        "ErpKey": "B2",
        "ErpActorType": "Customer",
    }
    status, error = await post(service, "CreateActorLink", other)
    assert status == 409
    assert error["ErrorMessage"].startswith(
        "Contact 1 is already linked to Customer 'B1' on connection 2 (ERP two)"
    )
    # the same link again is no conflict
    status, linked = await post(service, "CreateActorLink", {**other, "ErpKey": "B1"})
    assert (status, linked) == (200, True)
    assert await db.fetchval(
        "SELECT erp_key FROM external_keys WHERE internal_key_id = 1 AND connection_id = 2"
    ) == ("B1")


async def test_link_break_and_link_again(service: Service, db: asyncpg.Connection) -> None:
    body = {
        "ErpConnectionId": 1,
        "CrmRecordId": 2,
        "CrmActorType": "Contact",
        "ErpKey": "A2",
        "ErpActorType": "Customer",
    }
    assert await post(service, "CreateActorLink", body) == (200, True)
    key = await db.fetchval(
        "SELECT internal_key_id FROM external_keys WHERE connection_id = 1 AND erp_key = 'A2'"
    )
    assert key is not None
    unlink = {"ErpConnectionId": 1, "CrmRecordId": 2, "CrmActorType": "Contact"}
    assert await post(service, "BreakActorLink", unlink) == (200, True)
    assert await post(service, "BreakActorLink", unlink) == (200, False)
    broken = await db.fetchrow("SELECT * FROM broken_links WHERE internal_key_id = $1", key)
    assert broken is not None
    assert (broken["connection_id"], broken["erp_key"], broken["broken_by"]) == (1, "A2", "tje0")
    # the actor is free again: another record may take it; ConnectActor clears the break
    assert await post(service, "ConnectActor", body) == (204, None)
    assert await db.fetchval("SELECT count(*) FROM broken_links") == 0


async def test_create_erp_actor_from_crm_creates_links_and_refuses_twice(
    service: Service, stores: dict[int, MemoryStore], db: asyncpg.Connection
) -> None:
    body = {
        "ConnectionId": 1,
        "CrmEntityId": 3,
        "ErpActorType": "Customer",
        "CrmActorType": "Contact",
        "ErpFieldKeyValues": {"city": "Bergen"},
    }
    assert await post(service, "CreateErpActorFromCrm", body) == (200, True)
    key = await db.fetchval(
        "SELECT e.erp_key FROM external_keys e JOIN internal_keys i ON i.id = e.internal_key_id "
        "WHERE i.crm_record_id = '3' AND e.connection_id = 1"
    )
    # ERP 1's to-ERP fields: name (both) and phone (to_erp); the given city on top
    assert stores[1].get("Customer", key) == {"name": "Co 3", "phone": "33", "city": "Bergen"}
    status, error = await post(service, "CreateErpActorFromCrm", body)
    assert status == 409 and "Contact 3 is already linked to Customer" in error["ErrorMessage"]
    assert stores[1].creates == 1
    status, error = await post(service, "CreateErpActorFromCrm", {**body, "CrmEntityId": 99})
    assert (status, error["ErrorMessage"]) == (404, "Contact 99 not found in the CRM")


async def test_record_view_reads_the_linked_actors_fields(service: Service) -> None:
    status, data = await post(
        service, "GetConnectionsAndDisplayFields", {"CrmActorType": "Contact", "EntityId": 1}
    )
    assert status == 200
    erp1, erp2 = data
    assert (erp1["Connected"], erp1["ErpKey"], erp1["ErpActorTypes"]) == (True, "A1", ["Customer"])
    assert {f["FieldKey"]: f["Value"] for f in erp1["ErpFields"]} == {
        "name": "A 1",
        "phone": "1",
        "email": "a@1",
        "city": None,
    }
    assert {f["FieldKey"]: f["Value"] for f in erp2["ErpFields"]}["company"] == "B 1"
    assert erp2["ConnectionName"] == "ERP two" and erp2["ReadError"] is None


async def test_connection_views_answer_from_the_configuration(service: Service) -> None:
    status, conn = await post(service, "GetConnection", {"ErpConnectionId": 2})
    assert status == 200
    assert (conn["ErpConnectionId"], conn["DisplayName"], conn["Active"]) == (2, "ERP two", True)
    assert conn["ConfigFields"] == {}  # connector settings (credentials) are never shown
    assert conn["AllAccess"] is False  # user "limited" may touch connection 1 only
    status, mapping = await post(
        service, "GetActorTypeMapping", {"ErpConnectionId": 1, "ActorType": "Customer"}
    )
    assert status == 200
    assert (mapping["ActorTypeErp"], mapping["ActorTypeCrm"]) == ("Customer", "Contact")
    assert [
        (f["ErpFieldKey"], f["CrmFieldKey"], f["SyncToErp"], f["SyncToCrm"])
        for f in mapping["FieldMappings"]
    ] == [
        ("name", "name", True, True),
        ("phone", "phone", True, False),
        ("email", "email", False, True),
        ("city", "city", False, False),
    ]
    assert await post(
        service, "GetCrmActorType", {"ErpConnectionId": 1, "ErpActorType": "Customer"}
    ) == (200, "Contact")
    status, error = await post(
        service, "GetCrmActorType", {"ErpConnectionId": 1, "ErpActorType": "Supplier"}
    )
    assert (status, error["ErrorMessage"]) == (
        404,
        "Connection 1 (ERP one) has no Supplier actor type",
    )
    status, summary = await post(service, "GetErpSyncConnectionSummary", {"ErpSyncConnectionId": 1})
    assert status == 200
    assert (summary["DisplayName"], summary["Links"], summary["LastSync"]) == ("ERP one", 1, None)
    assert summary["Actors"][0]["ActorType"] == "Customer" and summary["Actors"][0]["HasMappings"]


async def test_last_sync_counts_the_continuous_syncs_last_successful_run(
    service: Service, db: asyncpg.Connection
) -> None:
    """SuperOffice's LastSync is "the time of the last sync": a continuous-sync run that found
    nothing to queue made no task, yet it synced the connection."""
    await db.execute(
        "INSERT INTO sync_connections (connection_id, last_run_at, last_outcome) VALUES "
        "(1, '2026-12-01T10:00:00Z', 'ok'), (2, '2026-12-01T11:00:00Z', 'failed')"
    )
    one = await post(service, "GetErpSyncConnectionSummary", {"ErpSyncConnectionId": 1})
    two = await post(service, "GetErpSyncConnectionSummary", {"ErpSyncConnectionId": 2})
    assert one[0] == 200 and one[1]["LastSync"].startswith("2026-12-01T10:00:00.000"), one
    assert two[0] == 200 and two[1]["LastSync"] is None  # a failed run synced nothing


async def test_most_recent_timestamp_is_the_continuous_syncs_watermark(
    service: Service, db: asyncpg.Connection
) -> None:
    """SuperOffice's MostRecentTimestamp: "the point in time of the most-recently seen actor in
    the ERP system", the since of the connection's watermark that moved last."""
    await db.execute(
        "INSERT INTO sync_watermarks (connection_id, actor_type, since, moved_at) VALUES "
        "(1, 'Customer', '2026-12-01T10:00:00', now()), "
        "(1, 'Supplier', '2026-11-01T09:00:00', now() - interval '1 day')"
    )
    status, one = await post(service, "GetConnection", {"ErpConnectionId": 1})
    assert status == 200 and one["MostRecentTimestamp"] == "2026-12-01T10:00:00"
    status, listed = await post(service, "GetAllConnections", {})
    recent = {c["ErpConnectionId"]: c["MostRecentTimestamp"] for c in listed}
    assert recent[1] == "2026-12-01T10:00:00"
    assert recent[2] is None  # no continuous-sync run yet


async def test_a_restricted_caller_sees_and_touches_only_its_connections(
    service: Service,
) -> None:
    headers = {**LIMITED, "Accept": "application/json"}
    status, listed = await post(service, "GetAllConnections", {}, headers)
    assert [c["ErpConnectionId"] for c in listed] == [1]
    status, error = await post(service, "GetConnection", {"ErpConnectionId": 2}, headers)
    assert (status, error["ErrorType"]) == (403, "SoSecurityException")
    unlink = {"ErpConnectionId": 2, "CrmRecordId": 1, "CrmActorType": "Contact"}
    status, error = await post(service, "BreakActorLink", unlink, headers)
    assert status == 403
    status, data = await post(
        service,
        "GetConnectionsAndDisplayFields",
        {"CrmActorType": "Contact", "EntityId": 1},
        headers,
    )
    assert [c["ErpConnectionId"] for c in data] == [1]


async def test_bad_arguments_are_refused(service: Service) -> None:
    body = {"ErpConnectionId": 1, "CrmRecordId": 2, "CrmActorType": "Company", "ErpKey": "x"}
    status, error = await post(service, "CreateActorLink", {**body, "ErpActorType": "Customer"})
    assert status == 400 and error["ErrorMessage"].startswith("CrmActorType 'Company' is not one")
    body["CrmActorType"] = "Contact"
    status, error = await post(service, "CreateActorLink", {**body, "ErpActorType": "Supplier"})
    assert status == 404 and "maps no Supplier to Contact" in error["ErrorMessage"]
    status, error = await post(
        service, "CreateActorLink", {**body, "ErpActorType": "Customer", "ErpKey": ""}
    )
    assert (status, error["ErrorMessage"]) == (400, "ErpKey is required")


async def test_connect_actor_applies_the_chosen_values_and_logs_them(
    service: Service, stores: dict[int, MemoryStore], db: asyncpg.Connection
) -> None:
    def chosen(crm_field: str, value: str, *, to_crm: bool) -> dict[str, Any]:
        return {
            "DisplayName": crm_field,
            "CrmFieldKey": crm_field,
            "Value": value,
            "DisplayValue": value,
            "SyncToCrm": to_crm,
            "SyncToErp": not to_crm,
        }

    body = {
        "ErpConnectionId": 1,
        "CrmRecordId": 2,
        "CrmActorType": "Contact",
        "ErpKey": "A2",
        "ErpActorType": "Customer",
        "FieldValues": [
            chosen("name", "A 2", to_crm=True),  # the ERP's name wins
            chosen("phone", "22", to_crm=False),  # the CRM's phone wins
            chosen("email", "a@1", to_crm=False),  # already the ERP's: nothing written
        ],
    }
    assert await post(service, "ConnectActor", body) == (204, None)
    assert stores[0].get("Contact", "2")["name"] == "A 2"  # type: ignore[index]
    assert stores[1].get("Customer", "A2") == {"name": "A 2", "phone": "22", "email": "a@1"}
    rows = await db.fetch(
        "SELECT connection_id, erp_field, crm_field, target_is_crm, old_value, new_value, "
        "task_id FROM sync_log ORDER BY erp_field"
    )
    assert [tuple(r) for r in rows] == [
        (1, "name", "name", True, "Co 2", "A 2", None),
        (1, "phone", "phone", False, "1", "22", None),
    ]
    status, error = await post(
        service, "ConnectActor", {**body, "FieldValues": [chosen("fax", "1", to_crm=True)]}
    )
    assert (status, error["ErrorType"]) == (404, "SoNotFoundException")
    assert "CrmFieldKey 'fax' is not mapped" in error["ErrorMessage"]


async def test_try_connect_actor_answers_false_where_connect_actor_is_409(
    service: Service, stores: dict[int, MemoryStore], db: asyncpg.Connection
) -> None:
    chosen = {
        "DisplayName": "name",
        "CrmFieldKey": "name",
        "Value": "Taken",
        "DisplayValue": "Taken",
        "SyncToCrm": True,
        "SyncToErp": True,
    }
    # actor A1 is contact 1's on ERP 1: contact 2 may not have it
    taken = {
        "ErpConnectionId": 1,
        "CrmRecordId": 2,
        "CrmActorType": "Contact",
        "ErpKey": "A1",
        "ErpActorType": "Customer",
        "FieldValues": [chosen],
    }
    links = "SELECT internal_key_id, connection_id, erp_key FROM external_keys ORDER BY 1, 2"
    before = [tuple(r) for r in await db.fetch(links)]
    response = await service.client.post(f"{AGENT}/TryConnectActor", json=taken, headers=JSON)
    assert (response.status, await response.json()) == (200, False)
    assert response.headers["X-Link-Conflict"] == (
        "Customer 'A1' on connection 1 (ERP one) is already linked to another record "
        "(internal key 1); an actor links to one record per connection"
    )
    # contact 1 is linked to B1 on ERP 2: it may not have B2 (the other rule), also in XML
    response = await service.client.post(
        f"{AGENT}/TryConnectActor",
        data=(
            b"<TryConnectActor><ErpConnectionId>2</ErpConnectionId><CrmRecordId>1</CrmRecordId>"
            b"<CrmActorType>Contact</CrmActorType><ErpKey>B2</ErpKey>"
            b"<ErpActorType>Customer</ErpActorType></TryConnectActor>"
        ),
        headers=XML,
    )
    assert response.status == 200 and response.content_type == "application/xml"
    assert (await response.text()).endswith(">false</boolean>")
    assert response.headers["X-Link-Conflict"].startswith(
        "Contact 1 is already linked to Customer 'B1' on connection 2 (ERP two)"
    )
    # nothing changed: no link, no value written, nothing logged
    assert [tuple(r) for r in await db.fetch(links)] == before
    assert stores[0].get("Contact", "2")["name"] == "Co 2"  # type: ignore[index]
    assert stores[1].get("Customer", "A1")["name"] == "A 1"  # type: ignore[index]
    assert await db.fetchval("SELECT count(*) FROM sync_log") == 0
    # free: linked and the values applied, true
    free = {**taken, "ErpKey": "A2", "FieldValues": [{**chosen, "SyncToErp": False}]}
    response = await service.client.post(f"{AGENT}/TryConnectActor", json=free, headers=JSON)
    assert (response.status, await response.json()) == (200, True)
    assert "X-Link-Conflict" not in response.headers
    assert stores[0].get("Contact", "2")["name"] == "Taken"  # type: ignore[index]
    assert await db.fetchval(
        "SELECT erp_key FROM external_keys WHERE internal_key_id = 2 AND connection_id = 1"
    ) == ("A2")
    # the same link again is no conflict: true, the values applied again (none differ now)
    assert await post(service, "TryConnectActor", free) == (200, True)
    assert await db.fetchval("SELECT count(*) FROM sync_log") == 1


async def test_try_connect_actor_keeps_connect_actors_errors(
    service: Service, stores: dict[int, MemoryStore], db: asyncpg.Connection
) -> None:
    body = {
        "ErpConnectionId": 1,
        "CrmRecordId": 3,
        "CrmActorType": "Contact",
        "ErpKey": "A3",
        "ErpActorType": "Customer",
    }
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"ErpConnectionId": 9}, 404, "SoNotFoundException"),  # no such connection
        ({"CrmActorType": "Company"}, 400, "ArgumentException"),  # not a CRM actor type
        ({"ErpKey": ""}, 400, "ArgumentException"),
        ({"ErpActorType": "Supplier"}, 404, "SoNotFoundException"),  # not mapped
        ({"FieldValues": "name"}, 400, "ArgumentException"),
        (  # a CRM field the mapping lacks
            {"FieldValues": [{"CrmFieldKey": "fax", "Value": "1", "SyncToCrm": True}]},
            404,
            "SoNotFoundException",
        ),
    ]
    for bad, status, error_type in cases:
        tried = await post(service, "TryConnectActor", {**body, **bad})
        connected = await post(service, "ConnectActor", {**body, **bad})
        assert tried[0] == connected[0] == status, (bad, tried)
        assert tried[1] == connected[1] and tried[1]["ErrorType"] == error_type
    limited = {**LIMITED, "Accept": "application/json"}  # connection 1 only
    assert await post(service, "TryConnectActor", body, limited) == (200, True)
    status, error = await post(service, "TryConnectActor", {**body, "ErpConnectionId": 2}, limited)
    assert (status, error["ErrorType"]) == (403, "SoSecurityException")
    # linked, but the ERP actor is not there: ConnectActor's 404, the link stays
    gone = {
        **body,
        "CrmRecordId": 2,
        "ErpKey": "A9",
        "FieldValues": [{"CrmFieldKey": "phone", "Value": "9", "SyncToErp": True}],
    }
    status, error = await post(service, "TryConnectActor", gone)
    assert status == 404
    assert error["ErrorMessage"] == (
        "Linked, but the values were not applied: Customer 'A9' not found on ERP one"
    )
    # a failing connection: ConnectActor's 503 with Retry-After
    stores[1].outage = "transient"
    response = await service.client.post(
        f"{AGENT}/TryConnectActor",
        json={**gone, "CrmRecordId": 3, "ErpKey": "A3"},
        headers=JSON,
    )
    assert response.status == 503 and "Retry-After" in response.headers
