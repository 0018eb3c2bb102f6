"""/metrics moves with real work: requests, messages, chunks, records, retries, dead letters."""

from __future__ import annotations

import aio_pika
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from connectors.memory import MemoryStore
from tests.support import services
from tests.support.ops import seed, settings_for
from tests.support.service import Service
from tests.support.waiting import wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(service: Service) -> Samples:
    response = await service.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_and_gauges_follow_a_resync(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        before = await scrape(service)
        task_id = await service.resync(0, [1, 2, 3])
        info = await service.finished(task_id)
        assert info["State"] == "Succeeded", info
        # The last push unit can finish the task before the chunk's own ack is counted (the
        # chunk acks after publishing its units): wait until every delivery is counted.
        after = await wait_for(
            lambda: scrape(service),
            lambda m: (
                sum(
                    value(m, "erpsync_messages_consumed_total", routing_key=key, outcome="acked")
                    for key in (
                        "resync",
                        "resync.small",
                        "resync.small.push.1",
                        "resync.small.push.2",
                    )
                )
                >= 4
            ),
            timeout=10,
            what="the acks of the command, the chunk and both push units to be counted",
        )

    route = "/api/v1/Agents/ErpSync/ForceResyncBatchTask"
    accepted = {"route": route, "method": "POST", "status": "204"}
    assert value(before, "erpsync_http_requests_total", **accepted) == 0
    assert value(after, "erpsync_http_requests_total", **accepted) == 1
    assert (
        value(after, "erpsync_http_request_duration_seconds_count", route=route, method="POST") == 1
    )
    assert value(after, "erpsync_messages_published_total", routing_key="resync") == 1
    # A task of 3 records runs in the small-task lane (engine.small_task_records).
    assert value(after, "erpsync_messages_published_total", routing_key="resync.small") == 1
    assert (
        value(after, "erpsync_messages_consumed_total", routing_key="resync", outcome="acked") == 1
    )
    assert (
        value(after, "erpsync_messages_consumed_total", routing_key="resync.small", outcome="acked")
        == 1
    )
    assert value(after, "erpsync_delivery_wait_seconds_count", lane="small") == 1 + 2
    assert value(after, "erpsync_delivery_wait_seconds_count", lane="bulk") == 0
    # the chunk's push units, one per target, went to the targets' own queues (small lane)
    for target in ("1", "2"):
        push = f"resync.small.push.{target}"
        assert value(after, "erpsync_messages_published_total", routing_key=push) == 1
        assert (
            value(after, "erpsync_messages_consumed_total", routing_key=push, outcome="acked") == 1
        )
        assert value(after, "erpsync_queue_consumers", queue=f"{broker_prefix}.push.{target}") == 1
        small_queue = f"{broker_prefix}.small.push.{target}"
        assert value(after, "erpsync_queue_consumers", queue=small_queue) == 1
    assert value(after, "erpsync_chunks_processed_total") == 1 + 2
    # Key 1 differs on both ERPs, key 2 on ERP 1 only; the CRM source is read, not written.
    assert value(after, "erpsync_records_pushed_total", connection="1", outcome="updated") == 2
    assert value(after, "erpsync_records_pushed_total", connection="1", outcome="unchanged") == 1
    assert value(after, "erpsync_records_pushed_total", connection="2", outcome="updated") == 1
    assert value(after, "erpsync_records_pushed_total", connection="2", outcome="unchanged") == 2
    assert value(before, "erpsync_batch_tasks", state="Succeeded") == 0
    assert value(after, "erpsync_batch_tasks", state="Succeeded") == 1
    assert value(after, "erpsync_breaker_state", connection="2") == 0
    chunks_queue = f"{broker_prefix}.chunks"
    assert value(after, "erpsync_queue_messages", queue=chunks_queue) == 0
    assert value(after, "erpsync_queue_consumers", queue=chunks_queue) == 1


async def test_retries_failures_and_dead_letters_are_counted(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    settings = settings_for(
        database,
        broker_prefix,
        stores,
        overrides={2: {"fail": "transient"}},
        # No delayed retries: the records fail once the in-process attempts are spent.
        connection_options={2: {"retry": {"attempts": 3, "base_delay": 0, "delayed_attempts": 0}}},
    )
    async with Service(settings) as service:
        info = await service.finished(await service.resync(0, [1, 2, 3]))
        assert info["State"] == "Failed", info

        connection = await aio_pika.connect(services.AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(broker_prefix)
            await exchange.publish(
                aio_pika.Message(b"not json", message_id="bad-1"), routing_key="resync"
            )
        dead_queue = f"{broker_prefix}.dead-letters"
        after = await wait_for(
            lambda: scrape(service),
            lambda s: value(s, "erpsync_queue_messages", queue=dead_queue) == 1,
            what="the invalid message in the dead-letter queue",
        )

    assert value(after, "erpsync_connector_retries_total", connection="2") >= 2
    assert value(after, "erpsync_connector_retries_total", connection="1") == 0
    assert value(after, "erpsync_records_pushed_total", connection="2", outcome="failed") == 3
    assert value(after, "erpsync_batch_tasks", state="Failed") == 1
    assert value(after, "erpsync_dead_letters_total", routing_key="resync") == 1
    assert (
        value(
            after, "erpsync_messages_consumed_total", routing_key="resync", outcome="dead_lettered"
        )
        == 1
    )
    assert (
        value(after, "erpsync_messages_published_total", routing_key="resync") == 2
    )  # the command, and the copy sent to the dead-letter exchange


async def test_each_app_has_its_own_registry(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    settings = settings_for(database, broker_prefix, stores)
    async with Service(settings, engine=False) as first, Service(settings, engine=False) as second:
        await first.client.get("/health/live")
        one = await scrape(first)
        two = await scrape(second)
    live = {"route": "/health/live", "method": "GET", "status": "200"}
    assert value(one, "erpsync_http_requests_total", **live) == 1
    assert value(two, "erpsync_http_requests_total", **live) == 0
