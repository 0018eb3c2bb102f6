"""Force resync end to end: real HTTP, RabbitMQ and PostgreSQL, memory connectors as systems."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
import asyncpg
import pytest

from connectors.memory import MemoryStore
from engine.settings import Settings
from tests.support import services
from tests.support.service import AUTH, RESYNC, TASK_INFO, Service, link, sync_log
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for


async def seed(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """Three CRM contacts linked on both ERPs, with known differences."""
    crm, erp1, erp2 = stores[0], stores[1], stores[2]
    crm.put("Contact", "1", {"name": "Acme", "phone": "111", "email": "a@crm", "city": "Oslo"})
    crm.put("Contact", "2", {"name": "Beta", "phone": "222", "email": "b@crm", "city": "Bergen"})
    crm.put("Contact", "3", {"name": "Gamma", "phone": "333", "email": "c@crm", "city": "Tromsø"})
    erp1.put("Customer", "E1-1", {"name": "Acme", "phone": "999", "email": "a@erp1", "city": "X"})
    erp1.put(
        "Customer", "E1-2", {"name": "Beta Old", "phone": "222", "email": "b@crm", "city": "Bergen"}
    )
    erp1.put(
        "Customer", "E1-3", {"name": "Gamma", "phone": "333", "email": "c@crm", "city": "Tromsø"}
    )
    erp2.put("Customer", "E2-1", {"company": "Acme", "tel": "111", "mail": "old@x"})
    erp2.put("Customer", "E2-2", {"company": "Beta", "tel": "222", "mail": "b@crm"})
    erp2.put("Customer", "E2-3", {"company": "Gamma", "tel": "333", "mail": "c@crm"})
    for i in (1, 2, 3):
        await link(
            db, i, "Contact", str(i), {1: ("Customer", f"E1-{i}"), 2: ("Customer", f"E2-{i}")}
        )


def settings_for(database: str, prefix: str, stores: dict[int, MemoryStore], **kw: Any) -> Settings:
    return memory_settings(database, prefix, {cid: s.name for cid, s in stores.items()}, **kw)


async def outcomes(db: asyncpg.Connection, task_id: int) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT internal_key_id, connection_id, status, changed_fields FROM record_outcomes "
        "WHERE task_id = $1",
        task_id,
    )
    return sorted((tuple(r) for r in rows), key=lambda r: (r[0], r[1] or -1))


@pytest.fixture
async def seeded(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> Settings:
    """The three contacts seeded; the default settings on this test's database and stores."""
    await seed(db, stores)
    return settings_for(database, broker_prefix, stores)


async def test_resync_from_crm_writes_only_changed_fields_to_both_erps(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], seeded: Settings
) -> None:
    async with Service(seeded) as service:
        task_id = await service.resync(0, [1, 2, 3])
        info = await service.finished(task_id)

    assert info["State"] == "Succeeded", info
    assert info["ProgressPercent"] == 100
    assert info["StartCount"] == 1
    assert info["Name"] == "ForceResyncBatchTask"
    assert info["Created"] and info["LastStarted"]
    erp1, erp2 = stores[1], stores[2]
    assert erp1.get("Customer", "E1-1") == {
        "name": "Acme",
        "phone": "111",
        "email": "a@erp1",
        "city": "X",  # email/city not to_erp
    }
    assert erp1.get("Customer", "E1-2")["name"] == "Beta"  # type: ignore[index]
    assert erp2.get("Customer", "E2-1") == {"company": "Acme", "tel": "111", "mail": "a@crm"}
    assert erp1.saves == 2 and erp2.saves == 1  # E1-3, E2-2, E2-3 were equal: not written
    assert await sync_log(db, task_id) == sorted(
        [
            (1, 1, "phone", "phone", False, "999", "111"),
            (1, 2, "name", "name", False, "Beta Old", "Beta"),
            (2, 1, "mail", "email", False, "old@x", "a@crm"),
        ]
    )
    assert await outcomes(db, task_id) == [
        (1, 1, "updated", 1),
        (1, 2, "updated", 1),
        (2, 1, "updated", 1),
        (2, 2, "unchanged", 0),
        (3, 1, "unchanged", 0),
        (3, 2, "unchanged", 0),
    ]
    synced = await db.fetchval(
        "SELECT count(*) FROM external_keys WHERE last_synced_at IS NOT NULL"
    )
    assert synced == 6


async def test_resync_from_erp_flows_through_the_crm_by_direction(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], seeded: Settings
) -> None:
    async with Service(seeded) as service:
        task_id = await service.resync(1, [1, 2])
        info = await service.finished(task_id)

    assert info["State"] == "Succeeded", info
    crm, erp1, erp2 = stores[0], stores[1], stores[2]
    # ERP 1 -> CRM: name (both) and email (to_crm); phone is to_erp only, city none.
    assert crm.get("Contact", "1") == {
        "name": "Acme",
        "phone": "111",
        "email": "a@erp1",
        "city": "Oslo",
    }
    assert crm.get("Contact", "2")["name"] == "Beta Old"  # type: ignore[index]
    # CRM -> ERP 2 by ERP 2's directions; the source itself is not written back.
    assert erp2.get("Customer", "E2-1")["mail"] == "a@erp1"  # type: ignore[index]
    assert erp2.get("Customer", "E2-2")["company"] == "Beta Old"  # type: ignore[index]
    assert erp1.get("Customer", "E1-1")["phone"] == "999"  # type: ignore[index]
    assert erp1.saves == 0
    assert stores[2].get("Customer", "E2-3") == {"company": "Gamma", "tel": "333", "mail": "c@crm"}
    assert await sync_log(db, task_id) == sorted(
        [
            (1, 1, "email", "email", True, "a@crm", "a@erp1"),
            (1, 2, "name", "name", True, "Beta", "Beta Old"),
            (2, 1, "mail", "email", False, "old@x", "a@erp1"),
            (2, 2, "company", "name", False, "Beta", "Beta Old"),
        ]
    )


async def test_empty_internal_key_ids_means_every_linked_record(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    stores[0].put("Contact", "4", {"name": "Delta", "phone": "444", "email": "d@crm"})
    stores[2].put("Customer", "E2-4", {"company": "Delta (old)", "tel": "444", "mail": "d@crm"})
    await link(db, 4, "Contact", "4", {2: ("Customer", "E2-4")})  # only on ERP 2
    stores[0].put("Contact", "5", {"name": "Unlinked"})
    await link(db, 5, "Contact", "5", {})  # linked nowhere: not part of "all"
    settings = settings_for(database, broker_prefix, stores, chunk_size=2)
    async with Service(settings) as service:
        from_crm = await service.finished(await service.resync(0, []))
        from_erp1 = await service.finished(await service.resync(1, []))

    assert from_crm["State"] == "Succeeded", from_crm
    assert from_crm["Statistics"]["TotalRecords"] == 4
    # 2 planned chunks (stage 1), then a push unit per chunk and target (stage 2)
    assert from_crm["Statistics"]["PushUnits"] == 4
    assert from_crm["Statistics"]["RetryChunks"] == 0
    assert from_crm["Statistics"]["Chunks"] == from_crm["Statistics"]["ChunksDone"] == 2 + 4
    assert stores[2].get("Customer", "E2-4")["company"] == "Delta"  # type: ignore[index]
    assert {r[0] for r in await outcomes(db, from_crm["Id"])} == {1, 2, 3, 4}
    assert from_erp1["Statistics"]["TotalRecords"] == 3  # key 4 is not linked to ERP 1


async def test_unknown_internal_keys_are_reported_not_fatal(
    db: asyncpg.Connection, seeded: Settings
) -> None:
    async with Service(seeded) as service:
        info = await service.finished(await service.resync(0, [1, 999, 1000]))

    assert info["State"] == "Succeeded"
    assert "2 unknown internal keys" in info["Response"]
    assert info["Statistics"]["UnknownKeys"] == 2
    unknown = [r for r in await outcomes(db, info["Id"]) if r[2] == "unknown_key"]
    assert [(r[0], r[1]) for r in unknown] == [(999, None), (1000, None)]


async def test_failing_target_does_not_block_the_other(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    settings = settings_for(database, broker_prefix, stores, overrides={2: {"fail": "permanent"}})
    async with Service(settings) as service:
        info = await service.finished(await service.resync(0, [1, 2, 3]))

    assert info["State"] == "Failed"
    assert "3 failed" in info["Response"]
    assert "connection 2" in info["Response"]
    assert stores[1].get("Customer", "E1-1")["phone"] == "111"  # type: ignore[index]
    assert stores[1].get("Customer", "E1-2")["name"] == "Beta"  # type: ignore[index]
    rows = await outcomes(db, info["Id"])
    assert [r[2] for r in rows if r[1] == 2] == ["failed"] * 3
    assert [r[2] for r in rows if r[1] == 1] == ["updated", "updated", "unchanged"]
    assert {r[0] for r in await sync_log(db, info["Id"])} == {1}


async def test_running_the_same_resync_twice_changes_nothing_more(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], seeded: Settings
) -> None:
    async with Service(seeded) as service:
        first = await service.finished(await service.resync(0, [1, 2, 3]))
        saves = (stores[1].saves, stores[2].saves)
        second = await service.finished(await service.resync(0, [1, 2, 3]))

    assert first["Statistics"]["FieldsChanged"] == 3
    assert second["State"] == "Succeeded"
    assert second["Statistics"]["FieldsChanged"] == 0
    assert second["Statistics"]["Unchanged"] == 6
    assert (stores[1].saves, stores[2].saves) == saves
    assert len(await sync_log(db)) == 3


async def test_duplicate_delivery_of_a_published_command_runs_once(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """Another service publishes the command straight to RabbitMQ, twice with one message id."""
    await seed(db, stores)
    message_id = uuid.uuid4().hex
    async with Service(settings_for(database, broker_prefix, stores)):
        connection = await aio_pika.connect(services.AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(broker_prefix)
            for _ in range(2):
                await exchange.publish(
                    aio_pika.Message(
                        b'{"erpConnectionId": 0, "internalKeyIds": [1, 2]}',
                        message_id=message_id,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key="resync",
                )

        async def state() -> list[tuple[Any, ...]]:
            rows = await db.fetch("SELECT id, state FROM batch_tasks")
            return [tuple(r) for r in rows]

        tasks = await wait_for(
            state, lambda rows: bool(rows) and rows[0][1] == "Succeeded", what="direct task"
        )
        processed = await db.fetchval(
            "SELECT count(*) FROM processed_messages WHERE message_id = $1", message_id
        )
    assert len(tasks) == 1
    assert processed == 1
    # key 1: phone on ERP 1 and mail on ERP 2; key 2: name on ERP 1 -- once, not twice.
    assert len(await sync_log(db)) == 3
    assert stores[1].saves == 2


async def test_front_door_errors_use_the_superoffice_error_json(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        client = service.client
        unknown = await client.post(RESYNC, json={"ErpConnectionId": 77}, headers=AUTH)
        missing = await client.post(TASK_INFO, json={"Id": 424242}, headers=AUTH)
        anonymous = await client.post(RESYNC, json={"ErpConnectionId": 0})
        wrong = await client.post(RESYNC, json={}, headers={"Authorization": "Basic dGplMDp4"})
        bodies = [await r.json() for r in (unknown, missing, anonymous, wrong)]

    assert [unknown.status, missing.status, anonymous.status, wrong.status] == [404, 404, 401, 401]
    for body in bodies:
        assert body["Error"] is True
        assert set(body) == {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
    assert "77" in bodies[0]["ErrorMessage"]
    assert bodies[0]["ErrorType"] == bodies[1]["ErrorType"] == "SoNotFoundException"
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0


async def test_unconfirmed_publish_answers_503_and_leaves_no_task_new(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """With the command queue unbound the broker returns the message: nothing is queued."""
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        connection = await aio_pika.connect(services.AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(f"{broker_prefix}.commands")
            await queue.unbind(broker_prefix, "resync")
        response = await service.client.post(
            RESYNC, json={"ErpConnectionId": 0, "InternalKeyIds": [1]}, headers=AUTH
        )
        body = await response.json()
    assert response.status == 503
    assert body["Error"] is True and body["ErrorType"] == "ServiceUnavailableException"
    rows = await db.fetch("SELECT state, response FROM batch_tasks")
    assert [r["state"] for r in rows] == ["Failed"]
    assert "Not queued" in rows[0]["response"]


async def test_create_missing_creates_the_actor_once_and_links_it(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    stores[0].put("Contact", "4", {"name": "Delta", "phone": "444", "email": "d@crm"})
    await link(db, 4, "Contact", "4", {1: ("Customer", "E1-4")})  # not on ERP 2 yet
    stores[1].put("Customer", "E1-4", {"name": "Delta", "phone": "444", "email": "d@crm"})
    base = settings_for(database, broker_prefix, stores)
    erp2 = base.connections[1].model_copy(
        update={
            "actor_types": [
                base.connections[1].actor_types[0].model_copy(update={"create_missing": True})
            ]
        }
    )
    settings = base.model_copy(update={"connections": [base.connections[0], erp2]})
    async with Service(settings) as service:
        first = await service.finished(await service.resync(0, [4]))
        second = await service.finished(await service.resync(0, [4]))

    assert first["State"] == "Succeeded", first
    assert first["Statistics"]["Created"] == 1
    assert second["Statistics"]["Created"] == 0
    assert second["Statistics"]["FieldsChanged"] == 0
    assert stores[2].creates == 1
    key = await db.fetchval(
        "SELECT erp_key FROM external_keys WHERE internal_key_id = 4 AND connection_id = 2"
    )
    assert stores[2].get("Customer", key) == {"company": "Delta", "tel": "444", "mail": "d@crm"}
    assert await sync_log(db, first["Id"]) == sorted(
        [
            (2, 4, "company", "name", False, None, "Delta"),
            (2, 4, "tel", "phone", False, None, "444"),
            (2, 4, "mail", "email", False, None, "d@crm"),
        ]
    )
