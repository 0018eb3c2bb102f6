"""ToggleErpConnectionActive over real HTTP, and what an inactive connection means: the views
show it, the continuous sync and SyncAll leave it out, a resync neither reads from it nor pushes
to it (docs/api.md "Inactive connections")."""

from __future__ import annotations

from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from engine.api.appkeys import POOL, PUBLISHER
from engine.messaging.commands import new_message_id, resync_body
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.store import tasks
from engine.store.incremental import SYNC_TASK_NAME
from tests.e2e.api.test_access import LIMITED, access_settings
from tests.e2e.api.test_engine_control import seed_acme, sync_settings
from tests.support.service import AUTH, RESYNC, Service
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

ERPSYNC = "/api/v1/Agents/ErpSync"
XML = {**AUTH, "Accept": "application/xml", "Content-Type": "application/xml; charset=utf-8"}


async def post(service: Service, name: str, body: Any = None, **headers: str) -> Any:
    return await service.client.post(f"{ERPSYNC}/{name}", json=body, headers={**AUTH, **headers})


async def toggle(service: Service, connection: int, **extra: Any) -> tuple[list[str], str]:
    response = await post(
        service, "ToggleErpConnectionActive", {"ErpConnectionId": connection, **extra}
    )
    assert response.status == 200, await response.text()
    return await response.json(), response.headers["X-Connection-Active"]


async def active(service: Service, connection: int) -> bool:
    got = await (await post(service, "GetConnection", {"ErpConnectionId": connection})).json()
    value: bool = got["Active"]
    return value


async def test_the_toggle_persists_and_the_connection_views_show_it(
    front_door: Service, db: asyncpg.Connection
) -> None:
    assert await active(front_door, 1) is True  # no row: active
    assert await toggle(front_door, 1) == ([], "false")  # SuperOffice: no reasons, it toggled
    assert (
        await db.fetchval("SELECT active FROM connection_states WHERE connection_id = 1") is False
    )
    assert await active(front_door, 1) is False
    listed = await (await post(front_door, "GetAllConnections", {})).json()
    shown = {c["ErpConnectionId"]: c["Active"] for c in listed}
    assert shown[1] is False and shown[2] is True
    summary = await post(front_door, "GetErpSyncConnectionSummary", {"ErpSyncConnectionId": 1})
    assert (await summary.json())["Active"] is False
    status = await (await post(front_door, "GetEngineStatus")).json()
    states = {c["ConnectionId"]: c["Active"] for c in status["Connections"]}
    assert (states[0], states[1], states[2]) == (True, False, True)

    # XML in and out: SuperOffice's ArrayOfstring; toggled back.
    as_xml = await front_door.client.post(
        f"{ERPSYNC}/ToggleErpConnectionActive",
        data=b"<ToggleErpConnectionActive><ErpConnectionId>1</ErpConnectionId>"
        b"</ToggleErpConnectionActive>",
        headers=XML,
    )
    text = await as_xml.text()
    assert as_xml.status == 200 and as_xml.content_type == "application/xml", text
    assert "<ArrayOfstring" in text and "<string>" not in text, text
    assert as_xml.headers["X-Connection-Active"] == "true"
    assert await active(front_door, 1) is True

    # erpsync's Active sets instead of toggling: the same call twice leaves it as asked.
    assert await toggle(front_door, 2, Active=False) == ([], "false")
    assert await toggle(front_door, 2, Active="false") == ([], "false")
    assert await active(front_door, 2) is False
    assert await toggle(front_door, 2, Active=True) == ([], "true")
    assert await toggle(front_door, 2) == ([], "false")

    # A service started afterwards (another process) reads the stored state.
    async with Service(front_door.settings, engine=False) as other:
        assert await active(other, 2) is False and await active(other, 1) is True

    for unknown in (0, 807):  # the CRM is not an ERP connection: it cannot be toggled
        missing = await post(front_door, "ToggleErpConnectionActive", {"ErpConnectionId": unknown})
        assert missing.status == 404
        assert (await missing.json())["ErrorType"] == "SoNotFoundException"
    bad = await post(front_door, "ToggleErpConnectionActive", {"ErpConnectionId": 1, "Active": "x"})
    assert bad.status == 400
    assert await active(front_door, 1) is True  # nothing changed by the refused calls


async def test_a_caller_may_toggle_only_the_connections_it_may_touch(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore], rsa_key: rsa.RSAPrivateKey
) -> None:
    settings = access_settings(database, broker_prefix, stores, rsa_key)
    async with Service(settings, engine=False) as service:
        body = {"ErpConnectionId": 2}
        refused = await service.client.post(
            f"{ERPSYNC}/ToggleErpConnectionActive", json=body, headers=LIMITED
        )
        assert refused.status == 403
        error = await refused.json()
        assert error["ErrorType"] == "SoSecurityException"
        assert "may not activate or deactivate connection 2" in error["ErrorMessage"]
        own = await service.client.post(
            f"{ERPSYNC}/ToggleErpConnectionActive", json={"ErpConnectionId": 1}, headers=LIMITED
        )
        assert own.status == 200 and own.headers["X-Connection-Active"] == "false"


async def test_a_resync_from_an_inactive_connection_is_refused_and_creates_nothing(
    front_door: Service, db: asyncpg.Connection
) -> None:
    await toggle(front_door, 1, Active=False)
    refused = await front_door.client.post(
        RESYNC, json={"ErpConnectionId": 1, "InternalKeyIds": [1]}, headers=AUTH
    )
    assert refused.status == 409, await refused.text()
    error = await refused.json()
    assert error["ErrorType"] == "ConflictException"
    assert error["ErrorMessage"].startswith("Connection 1 (ERP one) is inactive")
    for name in ("ForceResync", "ForceResyncExternal"):
        body: dict[str, Any] = {"ErpConnectionId": 1, "InternalKeyIds": [1]}
        if name == "ForceResyncExternal":
            body = {"ErpConnectionId": 1, "ExternalKeys": ["E1-1"], "ErpActorType": "Customer"}
        sync = await post(front_door, name, body)
        assert sync.status == 409, (name, await sync.text())
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0
    # From the CRM or another ERP: accepted (an inactive connection is only left out as target).
    for source in (0, 2):
        accepted = await front_door.client.post(
            RESYNC, json={"ErpConnectionId": source, "InternalKeyIds": [1]}, headers=AUTH
        )
        assert accepted.status == 204
    await toggle(front_door, 1, Active=True)
    again = await front_door.client.post(
        RESYNC, json={"ErpConnectionId": 1, "InternalKeyIds": [1]}, headers=AUTH
    )
    assert again.status == 204  # this process sees its own toggle at once


async def _runs(db: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    return {r["connection_id"]: r for r in await db.fetch("SELECT * FROM sync_connections")}


async def _value(store: MemoryStore, actor_type: str, key: str, field: str) -> Any:
    return (store.get(actor_type, key) or {}).get(field)


async def test_the_continuous_sync_and_sync_all_leave_an_inactive_connection_out(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_acme(db, stores)
    async with Service(sync_settings(database, broker_prefix, stores)) as service:
        await post(service, "ChangeEngineStatus", {"Run": True})
        first = await wait_for(
            lambda: _runs(db),
            lambda rows: len(rows) == 3 and all(r["last_outcome"] == "ok" for r in rows.values()),
            what="every connection's first run",
        )
        assert await toggle(service, 1) == ([], "false")
        # A run claimed just before the toggle may still be under way: let it end.
        await wait_for(lambda: _runs(db), lambda rows: rows[1]["run_by"] is None)
        runs_of_one = (await _runs(db))[1]["runs"]
        status = await (await post(service, "GetEngineStatus")).json()
        by_id = {c["ConnectionId"]: c for c in status["Connections"]}
        assert by_id[1]["Active"] is False and by_id[1]["NextRun"] is None
        assert by_id[2]["NextRun"] is not None

        # A change in ERP one is not read; a CRM change reaches ERP two only.
        stores[1].put("Customer", "E1-1", {"name": "Acme", "phone": "111", "email": "z@erp"})
        stores[0].put("Contact", "1", {"name": "Acme", "phone": "222", "email": "a@crm"})
        await wait_for(lambda: _value(stores[2], "Customer", "E2-1", "tel"), lambda v: v == "222")
        synced = await (await post(service, "SyncAll")).json()
        assert synced["IsOk"] is True, synced
        assert synced["UserExplanation"].startswith("2 connections will sync"), synced
        assert "Inactive connections left out: 1." in synced["UserExplanation"]
        later = await wait_for(
            lambda: _runs(db),
            lambda rows: (
                rows[2]["runs"] > first[2]["runs"] + 2 and rows[0]["runs"] > first[0]["runs"] + 2
            ),
            what="more runs of the active connections",
        )
        assert later[1]["runs"] == runs_of_one  # never claimed while inactive
        # Every Sync task finished without a push to ERP one.
        await wait_for(
            lambda: db.fetchval(
                "SELECT count(*) FROM batch_tasks WHERE state NOT IN ('Succeeded', 'Failed')"
            ),
            lambda n: n == 0,
            what="the Sync tasks to finish",
        )
        assert await _value(stores[1], "Customer", "E1-1", "phone") == "111"
        assert (
            await db.fetchval("SELECT count(*) FROM record_outcomes WHERE connection_id = 1") == 0
        )
        assert await _value(stores[0], "Contact", "1", "email") == "a@crm"

        # Active again: it runs at once (its run fell due meanwhile) from its watermark, so the
        # change made while it was inactive is read.
        assert await toggle(service, 1) == ([], "true")
        await wait_for(lambda: _value(stores[0], "Contact", "1", "email"), lambda v: v == "z@erp")
        await wait_for(
            lambda: _value(stores[2], "Customer", "E2-1", "mail"), lambda v: v == "z@erp"
        )
        await post(service, "ChangeEngineStatus", {"Run": False})


def _retrying_settings(database: str, prefix: str, stores: dict[int, MemoryStore]) -> Any:
    """ERP two fails over to delayed retries quickly, its breaker out of the way."""
    retry = {"attempts": 1, "delayed_attempts": 20, "delayed_base": 0.1, "delayed_max": 0.2}
    breaker = {"failure_threshold": 1000}
    return memory_settings(
        database,
        prefix,
        {cid: s.name for cid, s in stores.items()},
        connection_options={2: {"retry": retry, "breaker": breaker}},
    )


async def test_a_resync_does_not_push_to_an_inactive_connection(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_acme(db, stores)
    stores[0].put("Contact", "1", {"name": "Acme", "phone": "222", "email": "a@crm"})
    async with Service(_retrying_settings(database, broker_prefix, stores)) as service:
        # Inactive before the task: ERP two is no target (no push, no outcome there).
        await toggle(service, 2, Active=False)
        task = await service.finished(await service.resync(0, [1]))
        assert task["State"] == "Succeeded", task
        assert await _value(stores[1], "Customer", "E1-1", "phone") == "222"
        assert await _value(stores[2], "Customer", "E2-1", "tel") == "111"
        outcomes = await db.fetch(
            "SELECT connection_id, status FROM record_outcomes WHERE task_id = $1", task["Id"]
        )
        assert sorted((o[0], o[1]) for o in outcomes) == [(1, "updated")]

        # A command from another service over AMQP, naming the inactive connection as its
        # source: the planner fails the task and says why.
        await service.app[PUBLISHER].publish(
            RESYNC_ROUTING_KEY, resync_body(2, (1,)), message_id=new_message_id()
        )
        failed = await wait_for(
            lambda: db.fetchrow(
                "SELECT state, response FROM batch_tasks WHERE source_connection_id = 2"
            ),
            lambda row: row is not None and row["state"] == "Failed",
            what="the AMQP task from the inactive connection to fail",
        )
        assert failed is not None
        assert failed["response"].startswith("Connection 2 (ERP two) is inactive"), failed

        # Set inactive while the push to it waits for a delayed retry: the retry does not push;
        # its records fail and RetryFailed pushes them once the connection is active again.
        await toggle(service, 2, Active=True)
        stores[0].put("Contact", "1", {"name": "Acme", "phone": "333", "email": "a@crm"})
        stores[2].outage = "transient"
        task_id = await service.resync(0, [1])
        await wait_for(
            lambda: db.fetchval(
                "SELECT count(*) FROM task_chunks WHERE task_id = $1 AND target_connection_id = 2"
                " AND attempt > 0",
                task_id,
            ),
            what="a delayed retry toward ERP two",
        )
        await toggle(service, 2, Active=False)
        stores[2].outage = None
        task = await service.finished(task_id)
        assert task["State"] == "Failed", task
        error = await db.fetchval(
            "SELECT error FROM record_outcomes WHERE task_id = $1 AND connection_id = 2"
            " AND status = 'failed'",
            task_id,
        )
        assert "was set inactive" in error and "RetryFailed" in error, error
        assert await _value(stores[2], "Customer", "E2-1", "tel") == "111"

        # RetryFailed while it is still inactive would push nothing: refused, nothing created,
        # the Idempotency-Key not claimed.
        before = await db.fetchval("SELECT count(*) FROM batch_tasks")
        refused = await post(service, "RetryFailed", {"Id": task_id}, **{"Idempotency-Key": "r1"})
        assert refused.status == 409, await refused.text()
        error = await refused.json()
        assert error["ErrorType"] == "ConflictException"
        message = error["ErrorMessage"]
        assert "inactive connection 2 (ERP two) only" in message and "Activate" in message
        assert await db.fetchval("SELECT count(*) FROM batch_tasks") == before
        assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0

        await toggle(service, 2, Active=True)
        retried = await post(service, "RetryFailed", {"Id": task_id}, **{"Idempotency-Key": "r1"})
        assert retried.status == 200, await retried.text()
        retry = await service.finished(await retried.json())
        assert retry["State"] == "Succeeded", retry
        assert await _value(stores[2], "Customer", "E2-1", "tel") == "333"


async def test_a_retry_leaves_out_a_target_that_is_still_inactive(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """The record failed on both ERPs; ERP two is inactive when it is retried: the retry
    pushes to ERP one only and its description says ERP two was left out."""
    await seed_acme(db, stores)
    stores[0].put("Contact", "1", {"name": "Acme", "phone": "222", "email": "a@crm"})
    async with Service(_retrying_settings(database, broker_prefix, stores)) as service:
        stores[1].outage = stores[2].outage = "permanent"
        task_id = (await service.finished(await service.resync(0, [1])))["Id"]
        failed = await db.fetch(
            "SELECT connection_id FROM record_outcomes WHERE task_id = $1 AND status = 'failed'",
            task_id,
        )
        assert sorted(r[0] for r in failed) == [1, 2]
        stores[1].outage = stores[2].outage = None
        await toggle(service, 2, Active=False)

        retried = await post(service, "RetryFailed", {"Id": task_id})
        assert retried.status == 200, await retried.text()
        retry = await service.finished(await retried.json())
        assert retry["State"] == "Succeeded", retry
        assert retry["Description"] == (
            f"Retry of the failed records of task {task_id}; not pushed to inactive "
            f"connection 2 (ERP two) (RetryFailed task {task_id} again once active)"
        )
        assert '"TargetKeys":{"1":[1]}' in retry["Request"], retry["Request"]
        assert await _value(stores[1], "Customer", "E1-1", "phone") == "222"
        assert await _value(stores[2], "Customer", "E2-1", "tel") == "111"

        # Both inactive: nothing left to push, refused naming both.
        await toggle(service, 1, Active=False)
        refused = await post(service, "RetryFailed", {"Id": task_id})
        assert refused.status == 409, await refused.text()
        assert (
            "inactive connections 1 (ERP one) and 2 (ERP two) only"
            in (await refused.json())["ErrorMessage"]
        )


async def test_a_sync_page_read_before_the_connection_was_set_inactive_still_runs(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """The continuous sync's watermark has moved past a page it queued: failing that page
    because the connection was set inactive meanwhile would lose its changes."""
    await seed_acme(db, stores)
    async with Service(_retrying_settings(database, broker_prefix, stores)) as service:
        await toggle(service, 2, Active=False)
        message_id = new_message_id()
        task_id = await tasks.create(
            service.app[POOL],
            source_connection_id=2,
            request={"ErpConnectionId": 2, "InternalKeyIds": [1]},
            message_id=message_id,
            name=SYNC_TASK_NAME,
        )
        await service.app[PUBLISHER].publish(
            RESYNC_ROUTING_KEY, resync_body(2, (1,), task_id=task_id), message_id=message_id
        )
        task = await service.finished(task_id)
        assert task["State"] == "Succeeded", task
