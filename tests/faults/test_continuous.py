"""The continuous sync under faults: the worker running a connection's run is SIGKILLed mid-run,
and the broker (a throwaway RabbitMQ node) is stopped and started once while the Sync tasks run.

1,000 ERP 1 customers are renamed by hand; the name flows to the CRM and on to ERP 2. Checked:
no change lost (every record ends equal on all three), none applied twice (one sync-log row
per record and field on each side), and, sampled all along, the watermark never ahead of
committed work (every renamed record at or before the watermark is in a committed Sync task).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from engine.devservices.nodes import RabbitNode
from engine.devservices.processes import Child
from tests.support import demo_workers, services
from tests.support.waiting import wait_for

RENAMED = 1000

AHEAD = """
SELECT count(*) FROM demo_erp1.customer c
JOIN external_keys e ON e.connection_id = 1 AND e.erp_key = c.key
JOIN sync_watermarks w ON w.connection_id = 1 AND w.actor_type = 'Customer'
WHERE c.name LIKE '% (renamed)'
  AND (c.last_modified < w.since::bigint
       OR (c.last_modified = w.since::bigint AND c.key = ANY(w.seen_keys)))
  AND NOT EXISTS (SELECT 1 FROM batch_tasks t
                  WHERE t.name = 'Sync' AND t.source_connection_id = 1
                    AND t.request -> 'InternalKeyIds' @> to_jsonb(e.internal_key_id))
"""
"""Renamed records the watermark has passed that no committed Sync task holds: must stay 0."""

MISMATCHED = """
SELECT count(*) FROM internal_keys i
JOIN demo_crm.contact c ON c.id::text = i.crm_record_id AND i.crm_actor_type = 'Contact'
JOIN external_keys e1 ON e1.internal_key_id = i.id AND e1.connection_id = 1
JOIN demo_erp1.customer a ON a.key = e1.erp_key
JOIN external_keys e2 ON e2.internal_key_id = i.id AND e2.connection_id = 2
JOIN demo_erp2.customer b ON b.id::text = e2.erp_key
WHERE a.name LIKE '% (renamed)' AND (c.name <> a.name OR b.company_name <> a.name)
"""


async def _count(db: asyncpg.Connection, sql: str) -> int:
    return int(await db.fetchval(sql))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("outage", ["stop_app", "kill"])
async def test_a_worker_killed_mid_run_and_a_broker_restart_lose_and_double_nothing(
    database: str, db: asyncpg.Connection, rabbit: RabbitNode, outage: str
) -> None:
    """``stop_app``: the broker shuts down cleanly; ``kill``: SIGKILL of the node."""
    await demo_workers.seed_demo(database)
    ahead: list[int] = []
    async with demo_workers.workers(
        database,
        rabbit.url,
        "erpsync-faults",
        delay_ms=400,  # every CRM read: a run of ten pages takes seconds, chunks too
        sync=True,
        ERPSYNC_SYNC__INITIAL_STATUS="running",
        ERPSYNC_SYNC__INTERVAL="1",
        ERPSYNC_SYNC__TICK="0.2",
        ERPSYNC_SYNC__PAGE_SIZE="100",
        ERPSYNC_SYNC__RUN_LEASE="4",
        ERPSYNC_ENGINE__HEARTBEAT_INTERVAL="1",
        ERPSYNC_ENGINE__STALE_AFTER="5",
        ERPSYNC_ENGINE__SWEEP_INTERVAL="1",
        ERPSYNC_BROKER__PREFETCH="2",
    ) as group:
        workers = [await group.start("one"), await group.start("two")]
        if outage == "kill":
            # As in test_broker.py: a clean restart first makes the freshly declared quorum
            # queues durable (rabbitmq-server#10070), then the crash hits a settled broker.
            await asyncio.to_thread(rabbit.stop_app)
            await asyncio.to_thread(rabbit.start_app)
            await wait_for(
                lambda: demo_workers.consumer_counts(rabbit.url, "erpsync-faults"),
                lambda c: c == demo_workers.ALL_CONSUMED_BY_TWO,
                timeout=60,
                what="the workers to re-attach after the clean restart",
            )
        await wait_for(
            lambda: _count(db, "SELECT count(*) FROM sync_connections WHERE last_outcome = 'ok'"),
            lambda n: n == 3,
            timeout=60,
            what="every connection's first run",
        )
        renamed = await db.execute(
            "UPDATE demo_erp1.customer SET name = name || ' (renamed)' "
            "WHERE key IN (SELECT erp_key FROM external_keys WHERE connection_id = 1 "
            "AND erp_actor_type = 'Customer')"
        )
        assert renamed == f"UPDATE {RENAMED}"

        async def sample() -> None:
            own = await asyncpg.connect(services.database_url(database))
            try:
                while True:
                    ahead.append(await _count(own, AHEAD))
                    await asyncio.sleep(0.1)
            finally:
                await own.close()

        sampler = asyncio.create_task(sample())
        try:
            # Mid-run: ERP 1's run has committed a page (a Sync task) and still holds the run.
            holder = await wait_for(
                lambda: db.fetchval(
                    "SELECT s.run_by FROM sync_connections s WHERE s.connection_id = 1 "
                    "AND s.run_by IS NOT NULL AND EXISTS (SELECT 1 FROM batch_tasks t "
                    "WHERE t.name = 'Sync' AND t.source_connection_id = 1)"
                ),
                timeout=60,
                what="ERP 1's run to be under way",
            )
            victim = _by_worker_id(workers, holder)
            victim.kill()
            workers.remove(victim)
            workers.append(await group.start("three"))
            # Another worker takes the run over once the lease runs out, from the watermark.
            await wait_for(
                lambda: db.fetchval(
                    "SELECT run_by FROM sync_connections WHERE connection_id = 1 "
                    "AND run_by IS NOT NULL AND run_by <> $1",
                    holder,
                ),
                timeout=60,
                what="another worker to take ERP 1's run over",
            )
            # The broker goes away once while Sync tasks run, and comes back.
            await asyncio.to_thread(rabbit.stop_app if outage == "stop_app" else rabbit.kill)
            for worker in workers:
                await wait_for(worker.ready, lambda ok: not ok, timeout=30, what="the outage")
            await asyncio.to_thread(rabbit.start_app if outage == "stop_app" else rabbit.start)
            try:
                await wait_for(
                    lambda: _count(db, MISMATCHED),
                    lambda n: n == 0,
                    timeout=180,
                    what="every renamed record to reach the CRM and ERP 2",
                )
                await wait_for(
                    lambda: _count(
                        db,
                        "SELECT count(*) FROM batch_tasks WHERE name = 'Sync' "
                        "AND state NOT IN ('Succeeded', 'Failed')",
                    ),
                    lambda n: n == 0,
                    timeout=120,
                    what="every Sync task to finish",
                )
            except AssertionError as exc:
                tails = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in workers)
                raise AssertionError(f"{exc}\n{tails}") from None
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler  # a sampler that failed fails the test here

    logged = await db.fetch(
        """
        SELECT connection_id, erp_field, target_is_crm, count(*) AS n,
               count(DISTINCT internal_key_id) AS keys
        FROM sync_log l WHERE new_value LIKE '% (renamed)' GROUP BY 1, 2, 3 ORDER BY 1, 2
        """
    )
    failed = await _count(
        db, "SELECT count(*) FROM batch_tasks WHERE name = 'Sync' AND state = 'Failed'"
    )
    print(
        f"[fault continuous {outage}] lost={await _count(db, MISMATCHED)} "
        f"logged={[tuple(r) for r in logged]} watermark_ahead_max={max(ahead)} "
        f"samples={len(ahead)} failed_sync_tasks={failed}"
    )
    assert max(ahead) == 0, "the watermark passed changes no committed task held"
    assert [tuple(r) for r in logged] == [
        (1, "name", True, RENAMED, RENAMED),  # ERP 1 -> CRM, once per record
        (2, "company_name", False, RENAMED, RENAMED),  # CRM -> ERP 2, once per record
    ]
    assert failed == 0


def _by_worker_id(workers: list[Child], worker_id: str) -> Child:
    """The child whose process id is in the worker id (host-pid-random)."""
    pid = int(worker_id.rsplit("-", 2)[-2])
    return next(w for w in workers if w.pid == pid)
