"""Tasks left behind: stuck without messages, a planner that died, streaming planning."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from connectors.memory import MemoryStore
from engine.messaging.broker import Publisher, connect
from engine.messaging.commands import ResyncCommand
from engine.settings import BrokerSettings, Settings
from engine.store import keys as keys_store
from engine.store import pool as pool_module
from engine.store import recovery, tasks
from engine.sync import planner as planner_module
from engine.sync.planner import Planner
from tests.support import services
from tests.support.service import Service, seed_stale
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for


def settings_for(
    database: str, prefix: str, stores: dict[int, MemoryStore], max_starts: int = 10
) -> Settings:
    settings = memory_settings(
        database, prefix, {cid: s.name for cid, s in stores.items()}, chunk_size=2
    )
    engine = settings.engine.model_copy(
        update={
            "sweep_interval": 0.05,
            "stale_after": 0.5,
            "heartbeat_interval": 0.1,
            "max_starts": max_starts,
        }
    )
    return settings.model_copy(update={"engine": engine})


async def stale_task(db: asyncpg.Connection, *, planned: bool, total: int | None) -> int:
    """A Started task whose worker vanished a minute ago, leaving no message anywhere."""
    task_id: int = await db.fetchval(
        """
        INSERT INTO batch_tasks (name, state, source_connection_id, request, message_id,
                                 start_count, heartbeat_at, planned, total_chunks, total_records)
        VALUES ('ForceResyncBatchTask', 'Started', 0,
                '{"ErpConnectionId": 0, "InternalKeyIds": []}', 'lost-command', 1,
                now() - interval '1 minute', $1, $2, $3)
        RETURNING id
        """,
        planned,
        2 if planned else 0,
        total,
    )
    await db.execute(
        "INSERT INTO task_chunks (task_id, chunk_no, internal_key_ids) VALUES ($1, 0, '{1,2}')",
        task_id,
    )
    if planned:
        await db.execute(
            "INSERT INTO task_chunks (task_id, chunk_no, internal_key_ids) VALUES ($1, 1, '{3,4}')",
            task_id,
        )
    return task_id


async def check_completed_once(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], info: dict[str, Any], n: int
) -> None:
    assert info["State"] == "Succeeded", info
    assert info["StartCount"] == 2
    counts = await db.fetch(
        "SELECT internal_key_id, connection_id, count(*) FROM record_outcomes "
        "WHERE task_id = $1 GROUP BY 1, 2",
        info["Id"],
    )
    assert {(r[0], r[1]): r[2] for r in counts} == {
        (i, c): 1 for i in range(1, n + 1) for c in (1, 2)
    }
    for i in range(1, n + 1):
        assert stores[2].get("Customer", f"B{i}") == {
            "company": f"Co {i}",
            "tel": f"{i}",
            "mail": f"{i}@c",
        }


async def test_a_task_stuck_without_messages_is_picked_up_again(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_stale(db, stores, 4)
    task_id = await stale_task(db, planned=True, total=4)
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        info = await service.finished(task_id)
    await check_completed_once(db, stores, info, 4)


async def test_lost_push_units_of_a_stuck_task_are_republished_to_their_targets(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """Stage 1 committed and its units were published, then the messages were lost."""
    await seed_stale(db, stores, 2)
    task_id: int = await db.fetchval(
        """
        INSERT INTO batch_tasks (name, state, source_connection_id, request, message_id,
                                 start_count, heartbeat_at, planned, total_chunks, total_records,
                                 done_chunks, done_records, retry_chunks, push_units)
        VALUES ('ForceResyncBatchTask', 'Started', 0,
                '{"ErpConnectionId": 0, "InternalKeyIds": []}', 'lost-units', 1,
                now() - interval '1 minute', true, 1, 2, 1, 2, 2, 2)
        RETURNING id
        """
    )
    await db.execute(
        """
        INSERT INTO task_chunks (task_id, chunk_no, internal_key_ids, state, target_connection_id,
                                 not_before, published_at)
        VALUES ($1, 0, '{1,2}', 'done', NULL, NULL, NULL),
               ($1, $2, '{1,2}', 'pending', 1, now() - interval '1 minute', now()),
               ($1, $2 + 1, '{1,2}', 'pending', 2, now() - interval '1 minute', now())
        """,
        task_id,
        tasks.RETRY_CHUNK_BASE,
    )
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        info = await service.finished(task_id)
    await check_completed_once(db, stores, info, 2)
    assert info["Statistics"]["ChunksDone"] == info["Statistics"]["Chunks"] == 3


async def test_a_task_waiting_behind_a_queue_backlog_is_not_restarted(
    db: asyncpg.Connection,
) -> None:
    """Its chunks may be queued behind other work: no duplicates, no start counted."""
    task_id = await stale_task(db, planned=True, total=4)  # chunks on the chunk queue (-1)
    async with db.transaction():
        waiting = await recovery.claim_stale_tasks(db, 0.5, 10, backlogged={-1})
    assert waiting == []
    row = await db.fetchrow(
        "SELECT start_count, heartbeat_at > now() - interval '10 seconds' AS fresh "
        "FROM batch_tasks WHERE id = $1",
        task_id,
    )
    assert row is not None
    assert (row["start_count"], row["fresh"]) == (1, True)  # looked at again after stale_after

    # A backlog elsewhere (a push queue) does not hide this task's lost chunks.
    await db.execute(
        "UPDATE batch_tasks SET heartbeat_at = now() - interval '1 minute' WHERE id = $1", task_id
    )
    async with db.transaction():
        stale = await recovery.claim_stale_tasks(db, 0.5, 10, backlogged={2})
    assert [(t.id, t.start_count) for t in stale] == [(task_id, 2)]


async def test_publisher_reports_the_work_queues_holding_ready_messages(
    broker_prefix: str,
) -> None:
    settings = BrokerSettings.model_validate({"url": services.AMQP_URL, "prefix": broker_prefix})
    connection = await connect(settings, "test")
    try:
        publisher = Publisher(connection, settings, [1, 2])
        await publisher.start()
        assert await publisher.backlogged() == set()
        await publisher.publish_chunk(1, 0, 2)  # a push unit for target 2
        await publisher.publish_chunk(1, 1, None)  # a planned chunk
        busy = await wait_for(
            publisher.backlogged, lambda b: b == {-1, 2}, what="both queues to hold a message"
        )
        assert busy == {-1, 2}
        await publisher.close()
    finally:
        await connection.close()


async def test_a_planner_that_died_mid_planning_is_resumed(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_stale(db, stores, 5)
    task_id = await stale_task(db, planned=False, total=None)  # chunk 0 = keys 1, 2 stored
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        info = await service.finished(task_id)
    await check_completed_once(db, stores, info, 5)
    chunks = await db.fetch(
        "SELECT chunk_no, internal_key_ids FROM task_chunks WHERE task_id = $1 AND chunk_no < $2 "
        "ORDER BY 1",
        task_id,
        tasks.RETRY_CHUNK_BASE,  # planned chunks (not their push units)
    )
    assert [list(r[1]) for r in chunks] == [[1, 2], [3, 4], [5]]  # continued after key 2
    assert info["Statistics"]["TotalRecords"] == 5


async def test_a_task_that_keeps_stalling_fails_instead_of_looping(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_stale(db, stores, 4)
    task_id = await stale_task(db, planned=True, total=4)
    settings = settings_for(database, broker_prefix, stores, max_starts=1)
    async with Service(settings) as service:
        info = await service.finished(task_id)
    assert info["State"] == "Failed"
    assert info["Response"] == "Stalled after 2 starts; not restarted"
    assert stores[2].calls == 0


class RecordingPublisher:
    """Stands in for the broker: remembers what was published, in order."""

    def __init__(self, events: list[tuple[str, int]]) -> None:
        self.events = events

    async def publish(self, routing_key: str, body: bytes, **_: Any) -> str:
        self.events.append(("publish", 1))
        return "id"

    async def publish_chunk(self, task_id: int, chunk_no: int, target: int | None) -> str:
        return await self.publish("", b"")


async def test_planning_resync_all_streams_one_page_at_a_time(
    database: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Structural bound: keys in hand never exceed one page plus one chunk."""
    n, page, chunk = 2_000, 100, 30
    await db.execute(
        "INSERT INTO internal_keys (id, crm_actor_type, crm_record_id) "
        "SELECT g, 'Contact', g::text FROM generate_series(1, $1) g",
        n,
    )
    await db.execute(
        "INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key) "
        "SELECT g, 1, 'Customer', 'A' || g FROM generate_series(1, $1) g",
        n,
    )
    events: list[tuple[str, int]] = []
    real_page = keys_store.page_linked

    async def spy(conn: Any, source: int, after: int, limit: int) -> list[int]:
        ids = await real_page(conn, source, after, limit)
        events.append(("page", len(ids)))
        return ids

    monkeypatch.setattr(keys_store, "page_linked", spy)
    window = 3
    monkeypatch.setattr(planner_module, "PUBLISH_WINDOW", window)
    settings = memory_settings(database, "unused", {0: "a", 1: "b", 2: "c"}, chunk_size=chunk)
    settings = settings.model_copy(
        update={"engine": settings.engine.model_copy(update={"key_page_size": page})}
    )
    pool = await pool_module.create_pool(settings.database)
    try:
        planner = Planner(settings, pool, RecordingPublisher(events))
        await planner.plan(ResyncCommand.model_validate({"ErpConnectionId": 0}), "m-stream")
    finally:
        await pool.close()

    fetched = published = peak = 0
    for kind, count in events:
        if kind == "page":
            assert count <= page
            fetched += count
        else:
            published += chunk
        peak = max(peak, fetched - min(published, fetched))
    assert fetched == n
    # A window of chunks is stored, then published together: that many chunks are in hand.
    assert peak <= page + window * chunk
    assert events.index(("publish", 1)) < [i for i, e in enumerate(events) if e[0] == "page"][1]
    stored = await db.fetchval("SELECT sum(cardinality(internal_key_ids)) FROM task_chunks")
    assert stored == n
