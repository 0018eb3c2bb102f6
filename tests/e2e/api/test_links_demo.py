"""The link endpoints and views with the demo: config/erpsync.toml's connections (PostgreSQL
connectors over the demo schemas) and its ids, over real HTTP and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from engine.devservices.processes import REPO
from engine.settings import load_settings
from tests.support import services
from tests.support.demo_workers import seed_demo
from tests.support.service import AUTH, Service

AGENT = "/api/v1/Agents/ErpSync"


@pytest.fixture
async def demo(database: str, broker_prefix: str) -> AsyncIterator[Service]:
    await seed_demo(database)
    settings = load_settings(
        REPO / "config" / "erpsync.toml",
        {
            "ERPSYNC_DATABASE_URL": services.database_url(database),
            "ERPSYNC_BROKER_URL": services.AMQP_URL,
            "ERPSYNC_BROKER_PREFIX": broker_prefix,
        },
    )
    async with Service(settings, engine=False) as service:
        yield service


async def post(service: Service, name: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = await service.client.post(f"{AGENT}/{name}", json=body, headers=AUTH)
    return response.status, await response.json()


async def test_demo_links_and_views(demo: Service) -> None:
    status, listed = await post(demo, "GetAllConnections", {"IncludeDeleted": False})
    assert status == 200
    assert [(c["ErpConnectionId"], c["DisplayName"]) for c in listed] == [
        (1, "Demo ERP 1"),
        (2, "Demo ERP 2"),
    ]
    status, record = await post(
        demo, "GetConnectionsAndDisplayFields", {"CrmActorType": "Contact", "EntityId": 1}
    )
    assert status == 200
    assert [(c["ErpConnectionId"], c["Connected"], c["ErpKey"]) for c in record] == [
        (1, True, "C00001"),
        (2, True, "10001"),
    ]
    assert all(c["ReadError"] is None for c in record)
    assert {f["FieldKey"] for f in record[0]["ErpFields"]} == {
        "name",
        "vat_no",
        "phone",
        "email",
        "city",
    }
    assert next(f["Value"] for f in record[0]["ErpFields"] if f["FieldKey"] == "name")

    # the sample's shape with demo ids: company 333 is C00333's already; C00001 is company 1's
    same = {
        "ErpConnectionId": 1,
        "CrmRecordId": 333,
        "CrmActorType": "Contact",
        "ErpKey": "C00333",
        "ErpActorType": "Customer",
    }
    assert await post(demo, "CreateActorLink", same) == (200, True)
    status, error = await post(demo, "CreateActorLink", {**same, "ErpKey": "C00001"})
    assert (status, error["ErrorType"]) == (409, "ConflictException")
    status, error = await post(
        demo, "CreateActorLink", {**same, "ErpKey": "C09999"}
    )  # a second actor for company 333
    assert (
        status == 409
        and "Contact 333 is already linked to Customer 'C00333'" in (error["ErrorMessage"])
    )
    unlink = {"ErpConnectionId": 2, "CrmRecordId": 333, "CrmActorType": "Contact"}
    assert await post(demo, "BreakActorLink", unlink) == (200, True)
    status, summary = await post(demo, "GetErpSyncConnectionSummary", {"ErpSyncConnectionId": 2})
    assert (summary["Links"], summary["BrokenLinks"]) == (2999, 1)
    assert [a["ActorType"] for a in summary["Actors"]] == ["Customer", "Person"]
    assert await post(
        demo, "GetCrmActorType", {"ErpConnectionId": 2, "ErpActorType": "Person"}
    ) == (
        200,
        "Person",
    )


async def test_demo_read_through(demo: Service, db: asyncpg.Connection) -> None:
    """The read-through endpoints over the demo's PostgreSQL connectors: company 1 is C00001
    on ERP 1 (its phone stale) and 10001 on ERP 2."""
    crm = await db.fetchrow("SELECT * FROM demo_crm.contact WHERE id = 1")
    erp1 = await db.fetchrow("SELECT * FROM demo_erp1.customer WHERE key = 'C00001'")
    erp2 = await db.fetchrow("SELECT * FROM demo_erp2.customer WHERE id = 10001")
    assert crm is not None and erp1 is not None and erp2 is not None
    response = await demo.client.post(
        f"{AGENT}/TestConnectionById", json={"ErpConnectionId": 2}, headers=AUTH
    )
    assert (response.status, await response.json()) == (200, True)
    assert response.headers["X-Connection-Test-Message"].startswith("PostgreSQL ")

    status, values = await post(
        demo,
        "GetFieldValuesFromErp",
        {"ErpConnectionId": 1, "ActorTypeErp": "Customer", "ErpKey": "C00001"},
    )
    assert status == 200
    assert [
        (v["ErpFieldKey"], v["CrmFieldKey"], v["Value"], v["SyncToCrm"], v["SyncToErp"])
        for v in values
    ] == [
        ("name", "name", erp1["name"], True, True),
        ("vat_no", "orgnr", erp1["vat_no"], False, True),
        ("phone", "phone", "+47 00000000", False, True),
        ("email", "email", erp1["email"], True, True),
        ("city", "city", erp1["city"], True, False),
    ]
    status, values = await post(
        demo, "GetFieldValuesFromCrm", {"RecordId": 1, "ActorTypeCrm": "Contact"}
    )
    assert status == 200
    # both ERPs' mappings: ERP 2's phone flows both ways, its town nowhere
    assert [(v["CrmFieldKey"], v["Value"], v["SyncToCrm"], v["SyncToErp"]) for v in values] == [
        ("name", crm["name"], True, True),
        ("orgnr", crm["orgnr"], False, True),
        ("phone", crm["phone"], True, True),
        ("email", crm["email"], True, True),
        ("city", crm["city"], True, False),
    ]
    # "Show in ERP tab": credit_limit is no mapped field
    erp_tab = {
        "ErpConnectionId": 1,
        "CrmActorType": "Contact",
        "EntityId": 1,
        "FieldKeys": ["credit_limit", "name"],
    }
    assert await post(demo, "GetErpFieldValues", erp_tab) == (200, ["10001.00", erp1["name"]])
    assert await post(
        demo, "GetErpFieldValues", {**erp_tab, "ErpConnectionId": 2, "FieldKeys": ["town"]}
    ) == (200, [erp2["town"]])
    status, error = await post(demo, "GetErpFieldValues", {**erp_tab, "FieldKeys": ["nope"]})
    assert (status, error["ErrorType"]) == (404, "SoNotFoundException")
    new_actor = {"ErpConnectionId": 2, "ErpActorType": "Customer"}
    assert await post(demo, "GetFieldsForNewErpActor", new_actor) == (200, [])
    assert await post(demo, "SupportsAdvancedSearch", new_actor) == (200, False)
    status, error = await post(
        demo,
        "GetFieldValuesFromErp",
        {"ErpConnectionId": 2, "ActorTypeErp": "Person", "ErpKey": "99999999"},
    )
    assert (status, error["ErrorMessage"]) == (
        404,
        "Person '99999999' not found on connection 2 (Demo ERP 2)",
    )
