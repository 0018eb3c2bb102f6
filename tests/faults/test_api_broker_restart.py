"""A 204 is never lost: restart a (throwaway) RabbitMQ node between requests.

Uses ``engine.devservices.nodes.RabbitNode`` on its own port; the shared broker on 5672 is never
touched.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connectors.memory import MemoryStore
from engine.devservices.nodes import RabbitNode
from engine.store.tasks import TERMINAL_STATES
from tests.support.api import api_settings, basic
from tests.support.service import RESYNC, Service, link
from tests.support.waiting import wait_for

AUTH = basic("tje0", "Tje0")
PUBLISH_TIMEOUT = 2.0


async def test_every_204_is_processed_and_an_outage_answers_503_promptly(
    database: str,
    db: asyncpg.Connection,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
    rabbit: RabbitNode,
) -> None:
    for i in (1, 2, 3):
        stores[0].put("Contact", str(i), {"name": f"C{i}", "phone": str(i)})
        stores[1].put("Customer", f"E{i}", {"name": f"C{i}", "phone": "old"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"E{i}")})
    settings = api_settings(database, "restart", stores, rsa_key)
    broker = settings.broker.model_copy(
        update={
            "url": SecretStr(rabbit.url),
            "publish_timeout": PUBLISH_TIMEOUT,
            "connect_timeout": 2.0,
        }
    )
    settings = settings.model_copy(update={"broker": broker})
    accepted: list[int] = []
    refused: list[float] = []

    async def resync() -> int:
        started = time.monotonic()
        response = await service.client.post(
            RESYNC, json={"InternalKeyIds": [1, 2, 3]}, headers=AUTH
        )
        if response.status == 204:
            accepted.append(int(response.headers["X-Batch-Task-Id"]))
        else:
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"] == "5"
            refused.append(time.monotonic() - started)
        return response.status

    async with Service(settings) as service:
        assert [await resync() for _ in range(5)] == [204] * 5
        await asyncio.to_thread(rabbit.stop_app)
        outage = [await resync() for _ in range(3)]
        await asyncio.to_thread(rabbit.start_app)
        # The publisher reconnects on its own; requests answer 503 until it has.
        await wait_for(resync, lambda status: status == 204, timeout=90, what="reconnect")
        assert [await resync() for _ in range(5)] == [204] * 5

        async def states() -> list[str]:
            return [(await service.task(task_id))["State"] for task_id in accepted]

        final = await wait_for(
            states,
            lambda s: all(state in TERMINAL_STATES for state in s),
            timeout=120,
            what="every accepted task to finish",
        )

    print(f"503 answer times during the outage: {[round(t, 3) for t in refused]} s")
    assert outage == [503, 503, 503]
    # Prompt: bounded by the publish timeout (2 s) plus headroom for a loaded 2-core machine.
    assert max(refused) < PUBLISH_TIMEOUT + 3, refused
    assert len(accepted) >= 11
    assert final == ["Succeeded"] * len(accepted)
    rows = await db.fetch("SELECT id, state, response FROM batch_tasks ORDER BY id")
    not_queued = [r for r in rows if r["id"] not in accepted]
    assert len(not_queued) == len(refused)
    assert all(r["state"] == "Failed" and "Not queued" in r["response"] for r in not_queued)
