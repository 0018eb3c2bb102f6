"""The front door's inactive set across a PostgreSQL restart (engine/api/active.py): the LISTEN
connection is lost, re-established with backoff, and a toggle made around the restart is seen
(read again once listening, or notified) without waiting KEPT, an hour here."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pydantic import SecretStr

from connectors.memory import MemoryStore
from engine.api import active
from engine.api.appkeys import ACTIVE_CONNECTIONS
from engine.devservices.nodes import PostgresCluster
from tests.support.ops import settings_for
from tests.support.service import AUTH, RESYNC, Service
from tests.support.waiting import wait_for


async def test_the_inactive_set_follows_a_database_restart(
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    postgres: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(active, "KEPT", 3600.0)
    base = settings_for("unused", broker_prefix, stores)
    database = base.database.model_copy(update={"url": SecretStr(postgres.url("erpsync"))})
    async with Service(base.model_copy(update={"database": database}), engine=False) as service:
        connections = service.app[ACTIVE_CONNECTIONS]
        assert connections.listening and await connections.is_active(1)
        assert "erpsync_notifications_listening 1.0" in await _metrics(service)
        postgres.stop("immediate")
        await wait_for(lambda: asyncio.sleep(0, not connections.listening), what="the loss noticed")
        assert "erpsync_notifications_listening 0.0" in await _metrics(service)
        postgres.start()
        db = await asyncpg.connect(postgres.url("erpsync"))
        try:
            await db.execute(
                "INSERT INTO connection_states (connection_id, active) VALUES (1, false)"
            )
        finally:
            await db.close()
        await wait_for(
            lambda: connections.is_active(1),
            lambda found: found is False,
            timeout=30,
            what="the toggle seen",
        )
        await wait_for(lambda: asyncio.sleep(0, connections.listening), what="listening again")
        assert "erpsync_notifications_listening 1.0" in await _metrics(service)
        body = {"ErpConnectionId": 1, "InternalKeyIds": [1]}
        refused = await service.client.post(RESYNC, json=body, headers=AUTH)
        assert refused.status == 409, await refused.text()


async def _metrics(service: Service) -> str:
    answer = await service.client.get("/metrics")
    assert answer.status == 200
    return await answer.text()
