"""Readiness follows its parts: stop a private broker or database -> 503 naming it -> 200."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import SecretStr

from connectors.memory import MemoryStore
from engine.devservices.nodes import PostgresCluster, RabbitNode
from tests.support.ops import seed, settings_for
from tests.support.service import Service
from tests.support.waiting import wait_for


async def test_ready_follows_the_broker_connection(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rabbit: RabbitNode,
) -> None:
    await seed(db, stores)
    base = settings_for(database, broker_prefix, stores)
    settings = base.model_copy(
        update={"broker": base.broker.model_copy(update={"url": SecretStr(rabbit.url)})}
    )
    async with Service(settings) as service:

        async def probe() -> tuple[int, dict[str, Any]]:
            response = await service.client.get("/health/ready")
            return response.status, await response.json()

        assert await probe() == (200, {"status": "ok"})
        live = await service.client.get("/health/live")
        assert live.status == 200

        rabbit.stop_app()
        _, body = await wait_for(probe, lambda r: r[0] == 503, what="not ready")
        assert body["status"] == "unavailable"
        assert "broker" in body["problems"]
        assert "database" not in body["problems"]
        assert (await service.client.get("/health/live")).status == 200

        rabbit.start_app()
        await wait_for(
            probe, lambda r: r == (200, {"status": "ok"}), timeout=60, what="ready again"
        )
        # Ready again means it: a resync goes through the restored connections end to end.
        info = await service.finished(await service.resync(0, [1, 2]))
        assert info["State"] == "Succeeded", info


async def test_ready_follows_the_database(
    broker_prefix: str, stores: dict[int, MemoryStore], postgres: PostgresCluster
) -> None:
    base = settings_for("unused", broker_prefix, stores)
    database = base.database.model_copy(update={"url": SecretStr(postgres.url("erpsync"))})
    async with Service(base.model_copy(update={"database": database})) as service:

        async def probe() -> tuple[int, dict[str, Any]]:
            response = await service.client.get("/health/ready")
            return response.status, await response.json()

        assert await probe() == (200, {"status": "ok"})
        postgres.stop("immediate")
        _, body = await wait_for(probe, lambda r: r[0] == 503, what="not ready")
        assert list(body["problems"]) == ["database"]
        postgres.start()
        await wait_for(
            probe, lambda r: r == (200, {"status": "ok"}), timeout=60, what="ready again"
        )
