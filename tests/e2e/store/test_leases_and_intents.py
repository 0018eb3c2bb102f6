"""Worker leases, orphaned chunks, change intents and the processed-message purge in SQL."""

from __future__ import annotations

import asyncpg

from engine.store import intents, recovery, results, tasks
from engine.store.results import FieldChange


async def started_task(pool: asyncpg.Pool) -> int:
    task_id = await tasks.create(pool, source_connection_id=0, request={})
    async with pool.acquire() as conn:
        await tasks.start(conn, task_id)
        await tasks.add_chunks(conn, task_id, 0, [[1, 2], [3, 4]])
    return task_id


# Leases here are judged with a short stale_after (STALE): a lease is only judged from the
# server's start (see engine.store.recovery), and the shared server may have started recently.
STALE = 2.0


async def test_a_lease_not_renewed_within_stale_after_is_dead(pool: asyncpg.Pool) -> None:
    await recovery.renew_lease(pool, "w1")
    assert await recovery.worker_alive(pool, "w1", STALE)
    await pool.execute("UPDATE worker_leases SET renewed_at = now() - interval '1 minute'")
    assert not await recovery.worker_alive(pool, "w1", STALE)
    await recovery.renew_lease(pool, "w1")
    assert await recovery.worker_alive(pool, "w1", STALE)
    await recovery.end_lease(pool, "w1")
    assert not await recovery.worker_alive(pool, "w1", STALE)
    assert not await recovery.worker_alive(pool, "never-seen", STALE)


async def test_live_workers_counts_current_leases_and_those_running_the_sync(
    pool: asyncpg.Pool,
) -> None:
    assert await recovery.live_workers(pool, STALE) == recovery.LiveWorkers(0, 0)
    await recovery.renew_lease(pool, "plain")
    await recovery.renew_lease(pool, "syncing", runs_sync=True)
    await recovery.renew_lease(pool, "dead", runs_sync=True)
    await pool.execute(
        "UPDATE worker_leases SET renewed_at = now() - interval '1 minute' WHERE worker = 'dead'"
    )
    assert await recovery.live_workers(pool, STALE) == recovery.LiveWorkers(2, 1)
    # A renewal records the worker's current setting; an ended lease is no worker.
    await recovery.renew_lease(pool, "plain", runs_sync=True)
    await recovery.end_lease(pool, "syncing")
    assert await recovery.live_workers(pool, STALE) == recovery.LiveWorkers(1, 1)
    await recovery.renew_lease(pool, "plain")
    assert await recovery.live_workers(pool, STALE) == recovery.LiveWorkers(1, 0)


async def test_leases_and_heartbeats_count_from_the_servers_start(pool: asyncpg.Pool) -> None:
    """Nobody can renew while PostgreSQL is down: a restart gives every worker stale_after."""
    uptime = await pool.fetchval(
        "SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8"
    )
    longer = uptime + 3600  # a stale_after longer than the server has been up
    task_id = await started_task(pool)
    await recovery.renew_lease(pool, "w1")
    await recovery.renew_lease(pool, "w2")
    assert await recovery.claim_chunk(pool, task_id, 0, "w1", longer)
    await pool.execute("UPDATE worker_leases SET renewed_at = now() - interval '10 years'")
    await pool.execute(
        "UPDATE batch_tasks SET heartbeat_at = now() - interval '10 years' WHERE id = $1", task_id
    )
    assert await recovery.worker_alive(pool, "w1", longer)
    claim = await recovery.claim_chunk(pool, task_id, 0, "w2", longer)
    assert claim is not None and claim.previous_alive
    async with pool.acquire() as conn:
        assert await recovery.release_orphaned_chunks(conn, longer, 10, "w2") == []
        assert await recovery.claim_stale_tasks(conn, longer, 10) == []
        # Judged with a stale_after shorter than the uptime, the same lease is dead.
        assert await recovery.release_orphaned_chunks(conn, STALE, 10, "w2") == [
            (task_id, 0, None, "w1")
        ]
        assert [t.id for t in await recovery.claim_stale_tasks(conn, STALE, 10)] == [task_id]


async def test_a_sweeper_never_takes_over_its_own_worker(pool: asyncpg.Pool) -> None:
    task_id = await started_task(pool)
    await recovery.renew_lease(pool, "w1")
    assert await recovery.claim_chunk(pool, task_id, 0, "w1", STALE)
    await pool.execute("UPDATE worker_leases SET renewed_at = now() - interval '1 minute'")
    async with pool.acquire() as conn:  # w1's own sweeper: it is alive, whatever its lease says
        assert await recovery.release_orphaned_chunks(conn, STALE, 10, "w1") == []
        assert await recovery.release_orphaned_chunks(conn, STALE, 10, "w2") == [
            (task_id, 0, None, "w1")
        ]


async def test_chunks_of_a_dead_worker_are_released_once_and_it_cannot_commit_them(
    pool: asyncpg.Pool,
) -> None:
    task_id = await started_task(pool)
    await recovery.renew_lease(pool, "frozen")
    await recovery.renew_lease(pool, "alive")
    assert await recovery.claim_chunk(pool, task_id, 0, "frozen", STALE)
    assert await recovery.claim_chunk(pool, task_id, 1, "alive", STALE)
    # A duplicate delivery while the owner lives leaves the chunk to it.
    duplicate = await recovery.claim_chunk(pool, task_id, 0, "alive", STALE)
    assert duplicate is not None
    assert (duplicate.previous_worker, duplicate.previous_alive) == ("frozen", True)
    assert (
        await pool.fetchval(
            "SELECT started_by FROM task_chunks WHERE task_id = $1 AND chunk_no = 0", task_id
        )
        == "frozen"
    )
    async with pool.acquire() as conn:
        assert await recovery.release_orphaned_chunks(conn, STALE, 10, "alive") == []
        await conn.execute(
            "UPDATE worker_leases SET renewed_at = now() - interval '2 minutes' "
            "WHERE worker = 'frozen'"
        )
        assert await recovery.release_orphaned_chunks(conn, STALE, 10, "alive") == [
            (task_id, 0, None, "frozen")
        ]
        assert await recovery.release_orphaned_chunks(conn, STALE, 10, "alive") == []
        claim = await recovery.claim_chunk(conn, task_id, 0, "alive", STALE)
        assert claim is not None and (claim.previous_worker, claim.previous_alive) == (None, False)
        # The frozen worker resumes: its commit of the chunk taken from it does nothing.
        assert not await tasks.mark_chunk_done(conn, task_id, 0, "frozen")
        assert await tasks.mark_chunk_done(conn, task_id, 0, "alive")


async def test_a_task_that_only_waited_for_a_retry_is_not_stale_when_it_falls_due(
    pool: asyncpg.Pool,
) -> None:
    """Nothing ran while the retry waited, so its heartbeat is old; publishing the due retry
    is the task's sign of life (else the same sweep counted a restart and published it twice)."""
    task_id = await started_task(pool)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE task_chunks SET state = 'done' WHERE task_id = $1", task_id)
        [(retry, _)] = await tasks.add_retry_chunks(
            conn, task_id, [tasks.RetryChunk((1, 2), 2, 1, 0.0)]
        )
        await conn.execute(
            "UPDATE batch_tasks SET planned = true, heartbeat_at = now() - interval '1 hour' "
            "WHERE id = $1",
            task_id,
        )
    async with pool.acquire() as conn:
        async with conn.transaction():
            assert await recovery.claim_due_retries(conn, 10) == [(task_id, retry, 2)]
        async with conn.transaction():
            assert await recovery.claim_stale_tasks(conn, STALE, 10) == []
        assert (
            await conn.fetchval("SELECT start_count FROM batch_tasks WHERE id = $1", task_id) == 1
        )


def change(key: int, field: str, old: str, new: str, connection: int = 1) -> FieldChange:
    return FieldChange(connection, key, None, "Customer", field, field, False, old, new)


async def test_intents_stay_until_their_record_is_settled(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await intents.record(
            conn, 7, 0, [change(1, "phone", "a", "b"), change(2, "phone", "c", "d")]
        )
        await intents.record(conn, 7, 0, [change(1, "phone", "a", "b", connection=2)])
        assert len(await intents.unsettled(conn, 7, [1, 2])) == 3
        await intents.settle(conn, 7, False, 1, {1})
        left = await intents.unsettled(conn, 7, [1, 2, 3])
        assert sorted((c.connection_id, c.internal_key_id) for c in left) == [(1, 2), (2, 1)]
        assert await intents.unsettled(conn, 8, [1, 2]) == []
        await intents.settle_task(conn, 7)
        assert await intents.unsettled(conn, 7, [1, 2]) == []


async def test_an_intent_keeps_the_conflicts_winner(pool: asyncpg.Pool) -> None:
    won = change(1, "phone", "a", "b")
    won.conflict_winner = "erp"
    async with pool.acquire() as conn:
        await intents.record(conn, 9, 0, [won, change(2, "phone", "c", "d")])
        found = await intents.unsettled(conn, 9, [1, 2])
    assert sorted((c.internal_key_id, c.conflict_winner) for c in found) == [(1, "erp"), (2, None)]


async def test_old_processed_message_ids_are_purged(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await results.mark_processed(conn, "old", None)
        assert await results.mark_processed(conn, "new", None)
        await conn.execute(
            "UPDATE processed_messages SET processed_at = now() - interval '8 days' "
            "WHERE message_id = 'old'"
        )
        assert await results.purge_processed(conn, 7 * 24 * 3600) == 1
        assert not await results.was_processed(conn, "old")
        assert await results.was_processed(conn, "new")


async def test_a_command_delivered_again_while_its_planner_lives_is_no_restart(
    pool: asyncpg.Pool,
) -> None:
    task_id = await tasks.create(pool, source_connection_id=0, request={})
    await recovery.renew_lease(pool, "p1")
    await recovery.renew_lease(pool, "p2")
    async with pool.acquire() as conn:

        async def start(worker: str) -> int:
            row = await tasks.start(conn, task_id, worker, 60)
            assert row is not None
            return int(row["start_count"])

        assert await start("p1") == 1  # the first start
        assert await start("p2") == 1  # p1 lives: a redelivery (channel closed), not a restart
        await conn.execute("UPDATE worker_leases SET renewed_at = now() - interval '2 minutes'")
        assert await start("p1") == 2  # p2's lease ran out: it died planning
        row = await tasks.start(conn, task_id)  # no worker: every start counts
        assert row is not None and row["start_count"] == 3
