"""The link endpoints and views with the demo: config/erpsync.toml's connections (PostgreSQL
connectors over the demo schemas) and its ids, over real HTTP and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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
