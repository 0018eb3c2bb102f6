"""The one database and broker helper of tests and benchmarks: unique names, databases created
(and migrated) and dropped, broker objects deleted.

Tests use the services of ``TEST_DATABASE_URL`` / ``TEST_AMQP_URL``; the benchmarks pass their own
``BENCH_*`` URLs. Both default to the local PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from engine.messaging.topology import Names
from engine.store import migrate

ADMIN_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def unique(prefix: str) -> str:
    """A name no other run uses (it carries the process id, which clean-up checks look for)."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def database_url(name: str, admin_url: str = ADMIN_DATABASE_URL) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(
    name: str,
    template: str | None = None,
    admin_url: str = ADMIN_DATABASE_URL,
    *,
    migrated: bool = False,
) -> str:
    """Create database ``name`` (a copy of ``template``, or with every migration applied when
    ``migrated``); return its URL."""
    admin = await asyncpg.connect(admin_url)
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await admin.close()
    url = database_url(name, admin_url)
    if migrated:
        conn = await asyncpg.connect(url)
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()
    return url


async def drop_database(name: str, admin_url: str = ADMIN_DATABASE_URL) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def copied_database(template: str, prefix: str = "erpsync_t") -> AsyncIterator[str]:
    """The name of a fresh copy of ``template``, dropped on exit."""
    name = unique(prefix)
    await create_database(name, template=template)
    try:
        yield name
    finally:
        await drop_database(name)


PUSH_TARGETS_TO_DELETE = (*range(17), 589)  # ids the tests configure (589: API samples)
"""Connection ids whose push queues a clean-up deletes (tests and benchmarks use a few)."""


async def delete_broker_objects(prefix: str, url: str = AMQP_URL) -> None:
    """Remove the queues and exchanges declared under ``prefix``."""
    names = Names(prefix)
    connection = await aio_pika.connect(url)
    try:
        push = [names.push(i) for i in PUSH_TARGETS_TO_DELETE]
        push += [names.small_push(i) for i in PUSH_TARGETS_TO_DELETE]
        for queue in (names.commands, names.chunks, names.small, *push, names.dead_letters):
            channel = await connection.channel()
            with contextlib.suppress(Exception):  # absent queues are fine
                await channel.queue_delete(queue)
        for name in (names.exchange, names.dead_letter_exchange, names.events):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
    finally:
        await connection.close()


async def queue_counts(names: Sequence[str], url: str = AMQP_URL) -> dict[str, tuple[int, int]]:
    """(ready messages, consumers) per queue, as the broker sees them (passive declare)."""
    connection = await aio_pika.connect(url)
    try:
        counts = {}
        for name in names:
            channel = await connection.channel()
            result = (await channel.declare_queue(name, passive=True)).declaration_result
            counts[name] = (result.message_count or 0, result.consumer_count or 0)
            await channel.close()
        return counts
    finally:
        await connection.close()


async def ready_messages(queue: str, url: str = AMQP_URL) -> int:
    """Messages ready in ``queue``."""
    return (await queue_counts([queue], url))[queue][0]


async def publish_command(prefix: str, body: bytes, message_id: str, url: str = AMQP_URL) -> None:
    """Publish a persistent resync command straight to the exchange (confirmed), as another
    service would."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(prefix)
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="resync",
        )
    finally:
        await connection.close()
