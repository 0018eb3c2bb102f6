"""Every API process sees a toggle at once (migration 0017's notification, engine/api/active.py):
two front doors on one database, KEPT an hour, so only the notification can explain a toggle
through one being seen by the other in time; and a lost LISTEN connection loses no change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from engine.api import active
from engine.api.active import ActiveConnections
from engine.api.appkeys import ACTIVE_CONNECTIONS
from engine.settings import DatabaseSettings
from engine.store.listener import Listener
from tests.e2e.api.test_connection_active import toggle
from tests.support import services
from tests.support.api import api_settings
from tests.support.service import AUTH, RESYNC, Service
from tests.support.waiting import wait_for

HOUR = 3600.0
SOON = 5.0
"""How long a change may take to arrive: far below KEPT (an hour here), generous for a busy
machine (it takes milliseconds)."""


@pytest.fixture
async def two_processes(
    database: str,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Service, Service]]:
    monkeypatch.setattr(active, "KEPT", HOUR)
    settings = api_settings(database, broker_prefix, stores, rsa_key)
    async with Service(settings, engine=False) as a, Service(settings, engine=False) as b:
        assert a.app[ACTIVE_CONNECTIONS]._kept == b.app[ACTIVE_CONNECTIONS]._kept == HOUR
        yield a, b


async def resync_status(service: Service, connection: int) -> int:
    body = {"ErpConnectionId": connection, "InternalKeyIds": [1]}
    response = await service.client.post(RESYNC, json=body, headers=AUTH)
    return response.status


async def seen(service: Service, connection: int, state: bool) -> None:
    connections = service.app[ACTIVE_CONNECTIONS]
    await wait_for(
        lambda: connections.is_active(connection),
        lambda found: found is state,
        timeout=SOON,
        what=f"connection {connection} {'active' if state else 'inactive'} in the other process",
    )


async def test_a_toggle_through_one_process_is_refused_by_another_at_once(
    two_processes: tuple[Service, Service], db: asyncpg.Connection
) -> None:
    a, b = two_processes
    assert await resync_status(b, 1) == 204  # B has read the set and keeps it (for an hour)
    assert await toggle(a, 1, Active=False) == ([], "false")
    await seen(b, 1, False)
    assert await resync_status(b, 1) == 409
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 1

    assert await toggle(a, 1, Active=True) == ([], "true")
    await seen(b, 1, True)
    assert await resync_status(b, 1) == 204

    # Whatever statement changes the state notifies: an operator's SQL too.
    await db.execute("UPDATE connection_states SET active = false WHERE connection_id = 1")
    await seen(a, 1, False)
    await seen(b, 1, False)
    assert await resync_status(a, 1) == 409
    await db.execute("DELETE FROM connection_states")  # no row: active
    await seen(b, 1, True)
    await db.execute("INSERT INTO connection_states (connection_id, active) VALUES (2, false)")
    await seen(b, 2, False)
    await db.execute("TRUNCATE connection_states")
    await seen(b, 2, True)


async def test_a_change_while_the_listen_connection_is_down_is_read_once_it_is_back(
    database: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await asyncpg.create_pool(services.database_url(database), min_size=1, max_size=2)
    listener = Listener(DatabaseSettings.model_validate({"url": services.database_url(database)}))
    connections = ActiveConnections(lambda: pool, kept=HOUR)
    connections.follow(listener)
    await listener.start()
    try:
        assert connections.listening and await connections.is_active(1)
        conn = listener._conn
        assert conn is not None
        back = asyncio.Event()  # the listener reconnects only once the gap's change is made
        reconnect = listener._listen

        async def gated() -> None:
            await back.wait()
            await reconnect()

        monkeypatch.setattr(listener, "_listen", gated)
        await db.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await wait_for(lambda: asyncio.sleep(0, not connections.listening), what="the loss noticed")
        # Changed while nobody listens: the notification is lost for good.
        await db.execute("INSERT INTO connection_states (connection_id, active) VALUES (1, false)")
        assert await connections.is_active(1)  # kept (an hour) while nobody listens
        back.set()
        await wait_for(lambda: asyncio.sleep(0, listener.listening), what="listening again")
        assert connections.listening
        assert not await connections.is_active(1)  # read again once listening
        await db.execute("UPDATE connection_states SET active = true WHERE connection_id = 1")
        await wait_for(lambda: connections.is_active(1), timeout=SOON, what="notified again")
    finally:
        await listener.close()
        await pool.close()
