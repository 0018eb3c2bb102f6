"""Worker processes under faults: killed workers, PostgreSQL restarts, flaky/slow targets.

Each test runs ``python -m engine serve`` processes against its own throwaway PostgreSQL cluster
(the shared RabbitMQ with a unique prefix; broker outages are tested elsewhere) and prints the
lost/duplicated figures it asserts to be 0.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.rig import Rig, assert_nothing_lost

pytestmark = pytest.mark.timeout(300)


async def test_sigkill_a_worker_mid_batch_and_start_another(the_rig: Rig) -> None:
    await the_rig.seed(400)
    config = the_rig.config(erp1={"faults": {"latency": 0.15}}, broker={"prefetch": 2})
    first = await the_rig.start_worker(config)
    task_id = await the_rig.submit()
    mid = await the_rig.wait_chunks_done(task_id, 3)
    await the_rig.kill(first)
    assert mid["state"] == "Started", mid
    second = await the_rig.start_worker(config)

    task = await the_rig.finished(task_id)
    assert task["state"] == "Succeeded", task["response"]
    assert task["start_count"] >= 2  # picked up again after the worker died
    by_worker = await the_rig.done_by(task_id)
    assert any(f"-{first.pid}-" in w for w in by_worker)
    assert any(f"-{second.pid}-" in w for w in by_worker)
    assert_nothing_lost(await the_rig.audit(task_id), "sigkill-worker")


async def test_postgres_restart_mid_batch(the_rig: Rig) -> None:
    await the_rig.seed(300)
    config = the_rig.config(erp1={"faults": {"latency": 0.1}}, broker={"prefetch": 2})
    await the_rig.start_worker(config)
    task_id = await the_rig.submit()
    mid = await the_rig.wait_chunks_done(task_id, 2)
    assert mid["state"] == "Started", mid
    await asyncio.to_thread(the_rig.cluster.stop, "immediate")
    # Down for longer than stale_after (5 s): every lease and heartbeat is older than that when
    # PostgreSQL is back, yet no worker died.
    await asyncio.sleep(6.0)
    await asyncio.to_thread(the_rig.cluster.start)

    task = await the_rig.finished(task_id, timeout=180)
    assert task["state"] == "Succeeded", task["response"]
    assert task["start_count"] == 1  # no worker died: no restart counted
    assert_nothing_lost(await the_rig.audit(task_id), "postgres-restart")


async def test_a_target_failing_transiently_30_percent_of_the_time(the_rig: Rig) -> None:
    await the_rig.seed(300)
    config = the_rig.config(  # ERP 2 both updates and creates: retried creates must not double
        erp2={
            "faults": {"fail_rate": 0.3, "seed": 4},
            "retry": {
                "attempts": 1,  # every failure goes through a delayed retry
                "base_delay": 0.05,
                "delayed_base": 0.2,
                "delayed_max": 1.0,
                "delayed_attempts": 15,
            },
            "breaker": {"failure_threshold": 5, "cooldown": 1.0},
        }
    )
    await the_rig.start_worker(config)
    task_id = await the_rig.submit()

    task = await the_rig.finished(task_id)
    assert task["state"] == "Succeeded", task["response"]
    retries = task["retry_chunks"] - task["push_units"]
    print(f"[fault transient-30%] delayed-retry chunks: {retries}")
    assert retries > 0
    assert_nothing_lost(await the_rig.audit(task_id), "transient-30%")


async def test_a_target_failing_permanently_for_some_records(the_rig: Rig) -> None:
    n = 200
    await the_rig.seed(n)
    rejected = [i for i in range(1, n + 1) if i % 10 == 0]
    config = the_rig.config(erp1={"faults": {"fail_keys": [f"C{i}" for i in rejected]}})
    await the_rig.start_worker(config)
    task_id = await the_rig.submit()

    task = await the_rig.finished(task_id)
    assert task["state"] == "Failed"
    assert f"{len(rejected)} failed" in task["response"]
    # permanent: recorded at once, never retried
    assert task["retry_chunks"] - task["push_units"] == 0
    report = await the_rig.audit(task_id, failing={(i, 1) for i in rejected})
    assert_nothing_lost(report, "permanent-some-records", failed=len(rejected))


async def test_a_slow_target(the_rig: Rig) -> None:
    await the_rig.seed(40)
    config = the_rig.config(
        erp2={"faults": {"latency": 1.0}, "timeout": 10},
        engine={"chunk_size": 10, "stale_after": 3.0},
    )
    await the_rig.start_worker(config)
    task_id = await the_rig.submit()

    task = await the_rig.finished(task_id)
    assert task["state"] == "Succeeded", task["response"]
    assert task["start_count"] == 1  # heartbeats kept the slow task from looking dead
    assert_nothing_lost(await the_rig.audit(task_id), "slow-target")


async def test_two_workers_share_one_large_batch_and_finish_it_once(the_rig: Rig) -> None:
    await the_rig.seed(1500)
    config = the_rig.config(
        erp1={"faults": {"latency": 0.05}}, engine={"chunk_size": 50}, broker={"prefetch": 2}
    )
    first = await the_rig.start_worker(config)
    second = await the_rig.start_worker(config)
    task_id = await the_rig.submit()

    task = await the_rig.finished(task_id)
    assert task["state"] == "Succeeded", task["response"]
    assert task["done_records"] == 1500 and task["total_chunks"] == 30
    assert task["push_units"] == 60  # a unit per chunk and target
    assert task["done_chunks"] == task["total_chunks"] + task["retry_chunks"]
    by_worker = await the_rig.done_by(task_id)
    print(f"[fault two-workers] chunks per worker: {by_worker}")
    assert sorted(by_worker) == sorted(
        w for w in by_worker if f"-{first.pid}-" in w or f"-{second.pid}-" in w
    )
    assert len(by_worker) == 2 and sum(by_worker.values()) == 30 + 60
    assert the_rig.finish_events(task_id) == 1
    assert_nothing_lost(await the_rig.audit(task_id), "two-workers")
