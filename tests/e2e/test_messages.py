"""The message contract for other services, dead letters and ``erpsync dlq``.

Commands are published with Debian's ``amqp-publish`` (librabbitmq, C), not aio-pika, to prove
the contract does not depend on our client: no ``message_id``, only what docs/messages.md asks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import asyncpg
import orjson
import pytest

from connectors.memory import MemoryStore
from engine.messaging.broker import Publisher, connect
from engine.messaging.consumer import Consumer, Delivery
from engine.messaging.topology import ORIGINAL_ROUTING_KEY_HEADER, REASON_HEADER
from engine.settings import BrokerSettings, Settings
from engine.store import tasks as store_tasks
from tests.support import services
from tests.support.cli import run_cli
from tests.support.service import Service, link, sync_log
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

AMQP_PUBLISH = shutil.which("amqp-publish")


async def _seed(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    stores[0].put("Contact", "1", {"name": "Acme", "phone": "111", "email": "a@crm"})
    stores[1].put("Customer", "E1-1", {"name": "Acme", "phone": "999", "email": "a@crm"})
    stores[2].put("Customer", "E2-1", {"company": "Acme", "tel": "111", "mail": "a@crm"})
    await link(db, 1, "Contact", "1", {1: ("Customer", "E1-1"), 2: ("Customer", "E2-1")})


async def amqp_publish(prefix: str, body: str, routing_key: str = "resync") -> None:
    """Publish like a shell script in another service would."""
    assert AMQP_PUBLISH, "amqp-publish is missing: apt-get install -y amqp-tools"
    proc = await asyncio.create_subprocess_exec(
        AMQP_PUBLISH,
        "--url",
        # librabbitmq reads a trailing "/" as the empty vhost; without a path it means "/".
        services.AMQP_URL.removesuffix("/"),
        "--exchange",
        prefix,
        "--routing-key",
        routing_key,
        "--persistent",
        "--content-type",
        "application/json",
        "--body",
        body,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (out + err).decode()


async def erpsync(prefix: str, *args: str) -> tuple[int, str, str]:
    """Run the CLI against the test broker/prefix."""
    env = {
        **os.environ,
        "ERPSYNC_BROKER_URL": services.AMQP_URL,
        "ERPSYNC_BROKER_PREFIX": prefix,
    }
    return await run_cli(*args, env=env)


async def succeeded(db: asyncpg.Connection, count: int, what: str) -> list[dict[str, Any]]:
    """Wait until there are ``count`` tasks and the latest has succeeded; return them."""
    return await wait_for(
        lambda: tasks(db),
        lambda rows: len(rows) == count and rows[-1]["state"] == "Succeeded",
        what=what,
    )


async def dead_letters(prefix: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Peek at the dead-letter queue (everything is requeued when the connection closes)."""
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{prefix}.dead-letters")
        found = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.append(message)
        return found


async def tasks(db: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT id, state, message_id, request FROM batch_tasks ORDER BY id")
    return [dict(r) for r in rows]


@pytest.fixture
async def seeded(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> Settings:
    """Contacts seeded; the memory settings on this test's database, broker prefix and stores."""
    await _seed(db, stores)
    return memory_settings(database, broker_prefix, {cid: s.name for cid, s in stores.items()})


async def test_another_client_malformed_goes_to_the_dlq_and_valid_runs_once(
    db: asyncpg.Connection, broker_prefix: str, seeded: Settings
) -> None:
    valid = '{"erpconnectionid": 0, "internalKeyIds": [1], "CorrelationId": "shell-42"}'
    async with Service(seeded, api=False):
        await amqp_publish(broker_prefix, '{"ErpConnectionId": "zero", "InternalKeyIds": [1')
        await amqp_publish(broker_prefix, '{"ErpConnectionId": "zero"}')
        await amqp_publish(broker_prefix, valid)
        await amqp_publish(broker_prefix, valid)  # same body, no message_id: deduplicated
        done = await succeeded(db, 1, "the valid command to run")
        letters = await wait_for(
            lambda: dead_letters(broker_prefix),
            lambda found: len(found) == 2,
            what="2 dead letters",
        )
        # The consumer survived both and still takes work.
        await amqp_publish(broker_prefix, '{"ErpConnectionId": 0, "InternalKeyIds": [1, 2]}')
        await succeeded(db, 2, "a later command to run")
        processed = await db.fetchval("SELECT count(*) FROM processed_messages")

    assert done[0]["message_id"].startswith("sha256:")
    assert orjson.loads(done[0]["request"]) == {"ErpConnectionId": 0, "InternalKeyIds": [1]}
    assert await db.fetchval("SELECT correlation_id FROM batch_tasks WHERE id = $1", done[0]["id"])
    assert processed == 2
    assert (
        await db.fetchval("SELECT start_count FROM batch_tasks WHERE id = $1", done[0]["id"]) == 1
    )
    assert len(await sync_log(db)) == 1  # ERP 1 phone 999 -> 111, once
    reasons = [m.headers[REASON_HEADER] for m in letters]
    assert "not valid JSON" in str(reasons[0])
    assert "ErpConnectionId" in str(reasons[1]) and "integer" in str(reasons[1])
    assert {m.headers[ORIGINAL_ROUTING_KEY_HEADER] for m in letters} == {"resync"}
    assert letters[0].body == b'{"ErpConnectionId": "zero", "InternalKeyIds": [1'


async def test_an_invalid_command_naming_its_task_fails_that_task_with_the_reason(
    db: asyncpg.Connection, broker_prefix: str, seeded: Settings
) -> None:
    await db.set_type_codec(  # as the service's pool does
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )
    task_id = await store_tasks.create(db, source_connection_id=0, request={})
    async with Service(seeded, api=False):
        await amqp_publish(broker_prefix, f'{{"taskid": {task_id}, "InternalKeyIds": "all"}}')
        row = await wait_for(
            lambda: db.fetchrow("SELECT state, response FROM batch_tasks WHERE id = $1", task_id),
            lambda r: r is not None and r["state"] != "New",
            what="the task to leave New",
        )
        await wait_for(lambda: dead_letters(broker_prefix), what="the dead letter")

    assert row is not None and row["state"] == "Failed"
    assert row["response"].startswith("Invalid command (dead-lettered): ")
    assert "InternalKeyIds" in row["response"]


async def test_a_command_published_with_aio_pika_and_a_message_id_runs_once(
    db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore], seeded: Settings
) -> None:
    async with Service(seeded, api=False):
        connection = await aio_pika.connect(services.AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(broker_prefix)
            for correlation in ("first", "second"):  # the body differs, the id does not
                await exchange.publish(
                    aio_pika.Message(
                        orjson.dumps({"InternalKeyIds": [1], "CorrelationId": correlation}),
                        message_id="order-7",
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key="resync",
                )
        rows = await succeeded(db, 1, "the command to run")
        await wait_for(
            lambda: _ready_messages(f"{broker_prefix}.commands"),
            lambda n: n == 0,
            what="the duplicate to be consumed",
        )
    assert rows[0]["message_id"] == "order-7"
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 1
    assert await db.fetchval("SELECT start_count FROM batch_tasks") == 1  # planned once
    assert stores[1].saves == 1
    assert len(await sync_log(db)) == 1  # ERP 1 phone 999 -> 111, logged once


async def dead_lettered(prefix: str, settings: Settings, *bodies: str) -> None:
    """Publish invalid ``bodies`` and wait until a worker has dead-lettered them all."""
    async with Service(settings, api=False):
        for body in bodies:
            await amqp_publish(prefix, body)
        await wait_for(
            lambda: _ready_messages(f"{prefix}.dead-letters"),
            lambda n: n == len(bodies),
            what=f"{len(bodies)} dead letters",
        )


async def test_dlq_list_and_replay(broker_prefix: str, seeded: Settings) -> None:
    await dead_lettered(
        broker_prefix, seeded, '{"ErpConnectionId": 0, "InternalKeyIds": "all"}', "[]"
    )

    code, table, err = await erpsync(broker_prefix, "dlq", "list")
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split() == ["MESSAGE", "ID", "ROUTING", "KEY", "DEAD-LETTERED", "REASON"]
    assert "InternalKeyIds: must be an array of integers" in lines[1]
    assert "body must be a JSON object" in lines[2]
    assert "2 dead letters" in table

    code, out, err = await erpsync(broker_prefix, "dlq", "list", "--json")
    assert code == 0, err
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert [item["routing_key"] for item in listed] == ["resync", "resync"]
    assert all(item["id"].startswith("sha256:") and item["time"] for item in listed)
    assert await _ready_messages(f"{broker_prefix}.dead-letters") == 2  # listing moved nothing

    # Replay into a work exchange that cannot route: refused, nothing removed.
    connection = await aio_pika.connect(services.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{broker_prefix}.commands")
        await queue.unbind(broker_prefix, "resync")
        code, out, err = await erpsync(broker_prefix, "dlq", "replay", "--id", listed[0]["id"])
        assert code == 1
        assert "returned the message" in err and "Traceback" not in err
        assert await _ready_messages(f"{broker_prefix}.dead-letters") == 2
        await queue.bind(broker_prefix, "resync")

    code, out, err = await erpsync(broker_prefix, "dlq", "replay", "--id", listed[0]["id"])
    assert code == 0, err
    assert out.splitlines() == [f"replayed {listed[0]['id']}", "1 replayed"]
    assert await _ready_messages(f"{broker_prefix}.dead-letters") == 1
    assert await _ready_messages(f"{broker_prefix}.commands") == 1  # waiting for a worker

    code, out, err = await erpsync(broker_prefix, "dlq", "replay", "--all")
    assert code == 0, err
    assert out.splitlines()[-1] == "1 replayed"
    assert await _ready_messages(f"{broker_prefix}.dead-letters") == 0

    code, _, err = await erpsync(broker_prefix, "dlq", "replay")
    assert code == 1 and "--id ID" in err and "Traceback" not in err
    code, _, err = await erpsync(broker_prefix, "dlq", "replay", "--id", "nope")
    assert code == 1 and "not found" in err

    # A worker dead-letters the replayed invalid messages again, counting the replay.
    async with Service(seeded, api=False):
        letters = await wait_for(
            lambda: dead_letters(broker_prefix), lambda found: len(found) == 2, what="re-dead"
        )
    assert [m.headers.get("x-erpsync-replay-count") for m in letters] == [1, 1]


async def test_dlq_list_names_a_missing_queue_in_one_line(broker_prefix: str) -> None:
    code, _, err = await erpsync(broker_prefix, "dlq", "list")
    assert code == 1
    assert err.count("\n") == 1 and "no dead-letter queue" in err and "broker.prefix" in err


async def test_dlq_outside_a_checkout_lists_and_discards(
    broker_prefix: str, seeded: Settings, tmp_path: Path
) -> None:
    """No configuration file: the broker comes from the environment, and the CLI says so."""
    await dead_lettered(broker_prefix, seeded, "[]", "not json")
    env = {
        **{k: v for k, v in os.environ.items() if k != "ERPSYNC_CONFIG"},
        "ERPSYNC_BROKER_URL": services.AMQP_URL,
        "ERPSYNC_BROKER_PREFIX": broker_prefix,
    }

    async def dlq(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        return await run_cli("dlq", *args, env=env, stdin=stdin, cwd=tmp_path)

    code, out, err = await dlq("list", "--json")
    assert code == 0, err
    assert "no configuration file config/erpsync.toml" in err and "from ERPSYNC_BROKER_URL" in err
    assert "guest:guest" not in err  # the URL's password is not shown
    first, second = (orjson.loads(line)["id"] for line in out.splitlines())

    code, out, err = await dlq("discard", "--id", first, stdin=b"n\n")
    assert code == 1 and "nothing discarded" in err and out == ""
    code, out, err = await dlq("discard", "--id", first, stdin=b"")  # no answer at all
    assert code == 1 and "nothing discarded" in err
    assert await _ready_messages(f"{broker_prefix}.dead-letters") == 2
    code, out, err = await dlq("discard", "--id", first, stdin=b"y\n")
    assert code == 0, err
    assert out.splitlines() == [f"discarded {first}", "1 discarded"]
    code, out, err = await dlq("list", "--json")
    assert [orjson.loads(line)["id"] for line in out.splitlines()] == [second]
    code, out, err = await dlq("discard", "--all", "--yes")
    assert code == 0 and out.splitlines() == [f"discarded {second}", "1 discarded"], err
    assert await _ready_messages(f"{broker_prefix}.dead-letters") == 0
    code, _, err = await dlq("discard", "--id", "nope", "--yes")
    assert code == 1 and "1 ids not found" in err

    # A configuration named but missing is an error naming it, not a silent default.
    code, _, err = await dlq("list", "--config", "elsewhere.toml")
    assert code == 2 and "elsewhere.toml: file not found" in err


async def test_a_consumer_cancelled_by_the_broker_is_attached_again(
    db: asyncpg.Connection, broker_prefix: str, seeded: Settings
) -> None:
    """Deleting the queue cancels the consumer (aio-pika#334); the supervisor restores it."""
    worker = seeded.worker.model_copy(update={"consumer_check_interval": 0.2})
    settings = seeded.model_copy(update={"worker": worker})
    async with Service(settings, api=False):
        connection = await aio_pika.connect(services.AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(f"{broker_prefix}.commands")
        await wait_for(
            lambda: _consumers(f"{broker_prefix}.commands"),
            lambda n: n == 1,
            timeout=30,
            what="the commands queue to be declared and consumed again",
        )
        await amqp_publish(broker_prefix, '{"InternalKeyIds": [1]}')
        await succeeded(db, 1, "a command after the re-attach")


async def _queue_info(name: str) -> tuple[int, int]:
    try:
        return (await services.queue_counts([name]))[name]
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return -1, -1


async def _ready_messages(name: str) -> int:
    return (await _queue_info(name))[0]


async def _consumers(name: str) -> int:
    return (await _queue_info(name))[1]


class _Engine:
    """A consumer with a scripted handler, on the shared broker."""

    def __init__(self, prefix: str, delivery_limit: int = 10) -> None:
        self.settings = BrokerSettings.model_validate(
            {"url": services.AMQP_URL, "prefix": prefix, "delivery_limit": delivery_limit}
        )
        self.seen: list[int] = []
        self.failures: list[BaseException] = []

    async def handler(self, delivery: Delivery) -> None:
        self.seen.append(delivery.delivery_count)
        if self.failures:
            raise self.failures.pop(0)

    async def __aenter__(self) -> _Engine:
        self.connection = await connect(self.settings, "test")
        self.publisher = Publisher(self.connection, self.settings)
        await self.publisher.start()
        self.consumer = Consumer(
            self.connection,
            self.settings,
            self.publisher,
            {"commands": self.handler},
            check_interval=0.2,
        )
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop(5)
        await self.publisher.close()
        await self.connection.close()


async def test_an_outage_is_retried_in_place_without_spending_deliveries(
    broker_prefix: str,
) -> None:
    async with _Engine(broker_prefix, delivery_limit=1) as engine:
        engine.failures = [OSError("connection refused"), asyncpg.CannotConnectNowError("starting")]
        await engine.publisher.publish("resync", b"{}", message_id="m-1")
        await wait_for(lambda: _seen(engine), lambda n: n == 3, what="3 attempts")
        await wait_for(
            lambda: _queue_info(f"{broker_prefix}.commands"),
            lambda info: info == (0, 1),
            what="the delivery to be acked",
        )
    assert engine.seen == [0, 0, 0]  # one delivery, held: the limit of 1 was never reached
    assert await _ready_messages(f"{broker_prefix}.dead-letters") == 0


async def test_a_message_failing_every_time_is_dead_lettered_by_the_delivery_limit(
    broker_prefix: str,
) -> None:
    async with _Engine(broker_prefix, delivery_limit=1) as engine:
        engine.failures = [RuntimeError("bug"), RuntimeError("bug"), RuntimeError("bug")]
        await engine.publisher.publish("resync", b'{"InternalKeyIds": [1]}', message_id="m-2")
        await wait_for(
            lambda: _ready_messages(f"{broker_prefix}.dead-letters"),
            lambda n: n == 1,
            what="RabbitMQ to dead-letter it after the limit",
        )
    assert engine.seen == [0, 1]  # delivered, requeued once, then over the limit of 1

    code, out, err = await erpsync(broker_prefix, "dlq", "list", "--json")
    assert code == 0, err
    (letter,) = [orjson.loads(line) for line in out.splitlines()]
    assert letter["id"] == "m-2"
    assert letter["reason"] == f"delivery_limit in {broker_prefix}.commands (1x)"
    assert letter["routing_key"] == "resync"
    assert letter["source_queue"] == f"{broker_prefix}.commands"


async def _seen(engine: _Engine) -> int:
    return len(engine.seen)


async def test_a_channel_stuck_after_an_rpc_timeout_is_replaced(broker_prefix: str) -> None:
    """After an RPC times out (``basic.consume`` on a quorum queue still electing a leader after
    a broker crash), aiormq refuses every call on that channel until the broker confirms the
    close: the supervisor must move the subscription to a new channel, not retry forever."""
    async with _Engine(broker_prefix) as engine:
        consumer = engine.consumer
        old = consumer._channel
        assert old is not None
        underlay = await old.get_underlay_channel()
        # The state aiormq leaves a channel in when an RPC times out and no close-ok comes,
        # with the subscription lost: the supervisor has to subscribe again.
        underlay._Channel__close_event.set()  # type: ignore[attr-defined]
        consumer._subscriptions[0].tag = None

        async def state() -> tuple[bool, bool]:
            return consumer._channel is not old, consumer.is_attached

        await wait_for(state, lambda s: s == (True, True), timeout=15, what="a new channel")
        sub = consumer._subscriptions[0]
        assert sub.channel is consumer._channel and sub.tag is not None
        assert consumer._channel is not None
        new = await consumer._channel.get_underlay_channel()
        assert isinstance(new, aiormq.Channel)
        assert sub.tag in new.consumers  # subscribed on the new channel
        # (The simulated old subscription never got a Channel.Close through to the broker, so
        # it may linger there until the connection closes; after a real RPC timeout it is gone.)
        assert await _consumers(f"{broker_prefix}.commands") >= 1
