"""Run the whole service in-process over real HTTP, RabbitMQ and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from connectors.memory import MemoryStore
from engine.app import create_app
from engine.settings import Settings
from engine.store.tasks import TERMINAL_STATES
from tests.support.waiting import wait_for

AUTH = {"Authorization": "Basic " + base64.b64encode(b"tje0:Tje0").decode()}
RESYNC = "/api/v1/Agents/ErpSync/ForceResyncBatchTask"
TASK_INFO = "/api/v1/Agents/Batch/GetBatchTaskInfo"


class Service:
    """The service (front door + engine) on an ephemeral port, with a client."""

    def __init__(self, settings: Settings, *, api: bool = True, engine: bool = True) -> None:
        self.settings = settings
        self.app = create_app(settings, api=api, engine=engine)
        self.server = TestServer(self.app, host="127.0.0.1")
        self.client: TestClient[Any, Any] = TestClient(self.server)

    async def __aenter__(self) -> Service:
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def resync(self, erp_connection_id: int, keys: list[int]) -> int:
        """POST ForceResyncBatchTask; assert 204 and return the task id."""
        response = await self.client.post(
            RESYNC,
            json={"ErpConnectionId": erp_connection_id, "InternalKeyIds": keys},
            headers=AUTH,
        )
        assert response.status == 204, await response.text()
        return int(response.headers["X-Batch-Task-Id"])

    async def task(self, task_id: int) -> dict[str, Any]:
        response = await self.client.post(TASK_INFO, json={"Id": task_id}, headers=AUTH)
        assert response.status == 200, await response.text()
        info: dict[str, Any] = await response.json()
        return info

    async def finished(self, task_id: int, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the task reaches a terminal state and return its info."""
        return await wait_for(
            lambda: self.task(task_id),
            lambda info: info["State"] in TERMINAL_STATES,
            timeout=timeout,
            what=f"task {task_id} to finish",
        )


async def link(
    db: asyncpg.Connection,
    internal_key_id: int,
    crm_type: str,
    crm_id: str,
    links: dict[int, tuple[str, str]],
) -> None:
    """Create an internal key with a given id and its links {connection: (erp type, key)}."""
    await db.execute(
        "INSERT INTO internal_keys (id, crm_actor_type, crm_record_id) VALUES ($1, $2, $3)",
        internal_key_id,
        crm_type,
        crm_id,
    )
    for connection_id, (erp_type, erp_key) in links.items():
        await db.execute(
            """INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key)
               VALUES ($1, $2, $3, $4)""",
            internal_key_id,
            connection_id,
            erp_type,
            erp_key,
        )
    await db.execute("SELECT setval('internal_keys_id_seq', (SELECT max(id) FROM internal_keys))")


async def seed_stale(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], n: int, phone: str = "{i}"
) -> None:
    """CRM contacts 1..n (phone ``phone`` formatted with i), each linked to a stale customer:
    ``A<i>`` on ERP 1 and ``B<i>`` on ERP 2."""
    for i in range(1, n + 1):
        crm = {"name": f"Co {i}", "phone": phone.format(i=i), "email": f"{i}@c"}
        stores[0].put("Contact", str(i), crm)
        stores[1].put("Customer", f"A{i}", {"name": "old", "phone": "old", "email": "x"})
        stores[2].put("Customer", f"B{i}", {"company": "old", "tel": "old", "mail": "old"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}"), 2: ("Customer", f"B{i}")})


async def sync_log(db: asyncpg.Connection, task_id: int | None = None) -> list[tuple[Any, ...]]:
    """Sync log rows as (connection, internal key, erp field, crm field, to_crm, old, new)."""
    rows = await db.fetch(
        """SELECT connection_id, internal_key_id, erp_field, crm_field, target_is_crm,
                  old_value, new_value
           FROM sync_log WHERE $1::bigint IS NULL OR task_id = $1 ORDER BY id""",
        task_id,
    )
    return sorted(tuple(r) for r in rows)
