"""A link broken with BreakActorLink keeps the record off that connection in every resync, until
it is linked again.

Real HTTP, RabbitMQ, PostgreSQL and workers; memory connectors as the systems.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from connectors.memory import MemoryStore
from engine.settings import Settings
from tests.support.service import AUTH, Service, seed_stale
from tests.support.settings import memory_settings

AGENT = "/api/v1/Agents/ErpSync"


def settings_for(
    database: str, prefix: str, stores: dict[int, MemoryStore], *, create_missing: bool = False
) -> Settings:
    base = memory_settings(database, prefix, {c: s.name for c, s in stores.items()}, chunk_size=2)
    if not create_missing:
        return base
    erp2 = base.connections[1]
    mapping = erp2.actor_types[0].model_copy(update={"create_missing": True})
    erp2 = erp2.model_copy(update={"actor_types": [mapping]})
    return base.model_copy(update={"connections": [base.connections[0], erp2]})


async def agent(service: Service, name: str, body: dict[str, Any]) -> Any:
    response = await service.client.post(f"{AGENT}/{name}", json=body, headers=AUTH)
    assert response.status in (200, 204), await response.text()
    return await response.json() if response.status == 200 else None


async def outcome(db: asyncpg.Connection, task_id: int, key: int, connection: int) -> Any:
    return await db.fetchrow(
        "SELECT status, error FROM record_outcomes "
        "WHERE task_id = $1 AND internal_key_id = $2 AND connection_id = $3",
        task_id,
        key,
        connection,
    )


async def test_after_break_actor_link_resync_all_skips_that_record_on_that_connection(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_stale(db, stores, 3)
    # create_missing on ERP 2: without the break mark, the resync would create a new actor
    settings = settings_for(database, broker_prefix, stores, create_missing=True)
    unlink = {"ErpConnectionId": 2, "CrmRecordId": 2, "CrmActorType": "Contact"}
    async with Service(settings) as service:
        assert await agent(service, "BreakActorLink", unlink) is True
        from_crm = await service.finished(await service.resync(0, []))
        from_erp2 = await service.finished(await service.resync(2, []))
        explicit = await service.finished(await service.resync(0, [2]))

        assert from_crm["State"] == "Succeeded", from_crm
        assert stores[1].get("Customer", "A2")["phone"] == "2"  # type: ignore[index]
        assert stores[2].get("Customer", "B2")["tel"] == "old"  # type: ignore[index]
        assert stores[2].get("Customer", "B1")["tel"] == "1"  # type: ignore[index]
        assert stores[2].creates == 0
        skipped = await outcome(db, from_crm["Id"], 2, 2)
        assert skipped["status"] == "not_linked"
        assert "broken (BreakActorLink)" in skipped["error"]
        assert from_erp2["Statistics"]["TotalRecords"] == 2  # record 2 is not ERP 2's any more
        assert await outcome(db, from_erp2["Id"], 2, 1) is None
        assert (await outcome(db, explicit["Id"], 2, 2))["status"] == "not_linked"
        assert stores[2].creates == 0

        # linked again, it takes part again
        relink = {**unlink, "ErpKey": "B2", "ErpActorType": "Customer"}
        assert await agent(service, "CreateActorLink", relink) is True
        again = await service.finished(await service.resync(0, []))
    assert again["State"] == "Succeeded", again
    assert (await outcome(db, again["Id"], 2, 2))["status"] == "updated"
    assert stores[2].get("Customer", "B2")["tel"] == "2"  # type: ignore[index]


async def test_a_link_made_around_the_endpoints_ends_the_break(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """``keys import`` (or any other writer of the registry) may link a broken record again
    without clearing its mark: the link wins."""
    await seed_stale(db, stores, 2)
    settings = settings_for(database, broker_prefix, stores)
    unlink = {"ErpConnectionId": 2, "CrmRecordId": 2, "CrmActorType": "Contact"}
    async with Service(settings) as service:
        assert await agent(service, "BreakActorLink", unlink) is True
        await db.execute(
            "INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key) "
            "VALUES (2, 2, 'Customer', 'B2')"
        )
        task = await service.finished(await service.resync(0, []))
        view = await agent(
            service, "GetConnectionsAndDisplayFields", {"CrmActorType": "Contact", "EntityId": 2}
        )
    assert (await outcome(db, task["Id"], 2, 2))["status"] == "updated"
    assert (view[1]["Connected"], view[1]["LinkBroken"]) == (True, None)
