"""SIGTERM a worker process during a batch: it drains, requeues, exits 0; another one finishes.

The CRM connector stalls every read of CRM record "1" (a chunk or a push unit) while a marker
file exists, so at SIGTERM the worker surely holds a delivery that cannot finish within the
drain deadline (it must be requeued, never rejected) next to deliveries that do finish.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import asyncpg

from tests.support import demo_workers, services
from tests.support.waiting import wait_for

DRAIN_TIMEOUT = 6.0


async def test_sigterm_drains_requeues_and_another_worker_completes(
    database: str, db: asyncpg.Connection, broker_prefix: str, tmp_path: Path
) -> None:
    await demo_workers.seed_demo(database)
    stall = tmp_path / "stall"
    stall.touch()
    message_id = uuid.uuid4().hex
    async with demo_workers.workers(
        database,
        services.AMQP_URL,
        broker_prefix,
        delay_ms=150,
        stall_keys=["1"],
        stall_file=stall,
        ERPSYNC_ENGINE__CHUNK_SIZE="100",
        ERPSYNC_BROKER__PREFETCH="4",
        ERPSYNC_WORKER__DRAIN_TIMEOUT=str(DRAIN_TIMEOUT),
    ) as group:
        first = await group.start("first")
        await services.publish_command(
            broker_prefix,
            b'{"ErpConnectionId": 0, "InternalKeyIds": []}',
            message_id,
        )
        await wait_for(
            lambda: _exists(Path(f"{stall}.hit")), what="the first worker to hold a stalled chunk"
        )
        task = await wait_for(
            lambda: demo_workers.task_progress(db, message_id),
            lambda row: row is not None and row["done_chunks"] >= 2,
            what="the first worker to finish some chunks",
        )
        assert task is not None and task["state"] == "Started"

        sent = first.signal(signal.SIGTERM)
        code = await first.wait(timeout=DRAIN_TIMEOUT + 30)
        took = time.monotonic() - sent
        log = first.log()
        assert code == 0, log[-3000:]
        assert took <= DRAIN_TIMEOUT, f"exit took {took:.1f}s > drain timeout {DRAIN_TIMEOUT}s"
        assert "consumer stopped taking deliveries" in log
        assert "delivery cancelled before it finished; requeueing" in log
        assert "could not settle" not in log  # every requeue reached the broker

        # Nothing was rejected: the stalled work waits in its queue, the DLQ is empty. Push
        # units read the CRM too, so the stalled delivery is a chunk or a push unit.
        depths = await demo_workers.queue_depths(services.AMQP_URL, broker_prefix)
        assert depths["dead-letters"] == 0, depths
        assert (
            sum(depths[queue] for queue in demo_workers.WORK_QUEUES if queue != "commands") >= 1
        ), depths
        after_first = await demo_workers.task_progress(db, message_id)
        assert after_first is not None and after_first["state"] == "Started"

        stall.unlink()
        await group.start("second")
        done = await wait_for(
            lambda: demo_workers.task_progress(db, message_id),
            lambda row: row is not None and row["state"] in ("Succeeded", "Failed"),
            timeout=90,
            what="the second worker to complete the task",
        )
        # A chunk requeued by the drain and republished by the takeover may still be queued
        # when the task finishes; the running worker must consume and drop it, leaving nothing.
        await wait_for(
            lambda: demo_workers.queue_depths(services.AMQP_URL, broker_prefix),
            lambda depths: depths == demo_workers.NOTHING_QUEUED,
            timeout=30,
            what="the queues to drain",
        )

    assert done is not None
    figures = await demo_workers.accounting(db, done["id"])
    print(f"SIGTERM drain: {figures}, first worker exited in {took:.1f}s")
    demo_workers.assert_whole_batch_done(done, figures)
    depths = await demo_workers.queue_depths(services.AMQP_URL, broker_prefix)
    assert depths == demo_workers.NOTHING_QUEUED


async def _exists(path: Path) -> bool:
    return path.exists()  # noqa: ASYNC240
