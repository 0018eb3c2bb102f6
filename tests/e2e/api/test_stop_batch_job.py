"""StopBatchJob cancels a running resync between chunks and records what was done."""

from __future__ import annotations

import asyncpg
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from engine.api.routes import batch_task_info
from tests.support import services
from tests.support.api import api_settings, basic
from tests.support.service import Service, link
from tests.support.waiting import wait_for

AUTH = basic("tje0", "Tje0")
STOP = "/api/v1/Agents/Batch/StopBatchJob"
RECORDS = 40


async def test_stop_between_chunks(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    for i in range(1, RECORDS + 1):
        stores[0].put("Contact", str(i), {"name": f"New {i}", "phone": str(i)})
        stores[1].put("Customer", f"E{i}", {"name": f"Old {i}", "phone": "0"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"E{i}")})
    settings = api_settings(
        database,
        broker_prefix,
        stores,
        rsa_key,
        chunk_size=1,
        overrides={1: {"latency_ms": 100}},
    )
    # One chunk at a time, so "between chunks" is well defined.
    settings = settings.model_copy(
        update={"broker": settings.broker.model_copy(update={"prefetch": 1})}
    )
    async with Service(settings) as service:
        task_id = await service.resync(1, [])
        await wait_for(
            lambda: service.task(task_id),
            lambda info: info["Statistics"]["ChunksDone"] >= 2,
            what="two chunks done",
        )
        stopped = await service.client.post(STOP, json={"Id": task_id}, headers=AUTH)
        assert stopped.status == 200 and await stopped.json() is True
        # The remaining chunk messages are consumed and skipped (the task is terminal).
        await wait_for(
            lambda: services.ready_messages(f"{broker_prefix}.chunks"),
            lambda n: n == 0,
            what="chunks drained",
        )
    # Leaving the service drained the chunk that was running when the stop came.

    task = await db.fetchrow("SELECT * FROM batch_tasks WHERE id = $1", task_id)
    assert task is not None
    info = batch_task_info(task)
    assert info["State"] == "Failed"
    assert info["Statistics"]["Stopped"] is True
    # one record per chunk; each chunk's units (ERP 2, 589: nothing linked there) count too
    done = info["Statistics"]["DoneRecords"]
    assert 1 <= done < RECORDS, done
    assert done <= info["Statistics"]["ChunksDone"] <= 3 * done
    outcomes = await db.fetchval(
        "SELECT count(*) FROM record_outcomes WHERE task_id = $1 AND status <> 'not_linked'",
        task_id,
    )
    assert outcomes == done  # one target (the CRM) per record: nothing recorded beyond done
    unlinked = await db.fetch(
        "SELECT DISTINCT connection_id FROM record_outcomes "
        "WHERE task_id = $1 AND status = 'not_linked'",
        task_id,
    )
    assert {r["connection_id"] for r in unlinked} <= {2, 589}  # the units' targets
    contacts = [stores[0].get("Contact", str(i)) for i in range(1, RECORDS + 1)]
    names = [c["name"] for c in contacts if c is not None]
    assert len(names) == RECORDS and all(isinstance(n, str) for n in names)
    written = sum(1 for n in names if n is not None and n.startswith("Old"))
    assert written == done  # ERP 1 -> CRM name (both): only done chunks reached the CRM
    assert info["Response"].startswith(
        f"Stopped by tje0 after {info['Statistics']['ChunksDone']} of "
        f"{info['Statistics']['Chunks']} chunks and push units"
    )
    assert f"{done} record{'' if done == 1 else 's'}; writes" in info["Response"]


async def test_a_stop_that_skips_nothing_ends_succeeded(
    database: str,
    db: asyncpg.Connection,
    stores: dict[int, MemoryStore],
    broker_prefix: str,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    """Stopped while its last push unit runs: that unit commits, nothing was skipped."""
    stores[0].put("Contact", "1", {"name": "New", "phone": "1"})
    stores[1].put("Customer", "E1", {"name": "Old", "phone": "0"})
    stores[2].put("Customer", "F1", {"company": "Old", "tel": "0"})
    await link(db, 1, "Contact", "1", {1: ("Customer", "E1"), 2: ("Customer", "F1")})
    # ERP 2 answers slowly, so its push unit is the last one running.
    settings = api_settings(
        database, broker_prefix, stores, rsa_key, overrides={2: {"latency_ms": 1500}}
    )
    async with Service(settings) as service:
        task_id = await service.resync(0, [1])
        await wait_for(
            lambda: service.task(task_id),
            # Stage 1 commits the push units: before that there is one chunk and none done,
            # which is "all but one" too early.
            lambda info: (
                (s := info["Statistics"])["PushUnits"] > 0 and s["ChunksDone"] == s["Chunks"] - 1
            ),
            what="all but the slow push unit done",
        )
        stopped = await service.client.post(STOP, json={"Id": task_id}, headers=AUTH)
        assert stopped.status == 200 and await stopped.json() is True
        info = await wait_for(  # the running unit commits after the stop
            lambda: service.task(task_id),
            lambda info: (s := info["Statistics"])["ChunksDone"] == s["Chunks"],
            what="the last push unit committed",
        )
    assert info["State"] == "Succeeded", info
    assert info["Statistics"]["Stopped"] is False
    assert info["Statistics"]["ChunksDone"] == info["Statistics"]["Chunks"]
    assert info["Response"].startswith("Stop by tje0 came after all work had begun; 1 record;")
    assert stores[2].get("Customer", "F1")["company"] == "New"  # type: ignore[index]
