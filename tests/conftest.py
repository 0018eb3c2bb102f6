"""Fixtures: a migrated template database per run, a fresh database and broker prefix per test.

Tests talk to the real PostgreSQL and RabbitMQ (TEST_DATABASE_URL / TEST_AMQP_URL, defaulting to
the local services). When they are unreachable the tests fail; they never skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from connectors.memory import MemoryStore
from engine.store import migrate
from tests import support


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = support.unique("erpsync_tmpl")

    async def create() -> None:
        url = await support.create_database(name)
        conn = await asyncpg.connect(url)
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(support.drop_database(name))


@pytest.fixture
async def database(template_database: str) -> AsyncIterator[str]:
    """The name of a fresh, migrated database for this test (dropped afterwards)."""
    name = support.unique("erpsync_t")
    await support.create_database(name, template=template_database)
    yield name
    await support.drop_database(name)


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database."""
    conn = await asyncpg.connect(support.database_url(database))
    yield conn
    await conn.close()


@pytest.fixture
async def broker_prefix() -> AsyncIterator[str]:
    """A unique exchange/queue prefix; everything under it is deleted afterwards."""
    prefix = support.unique("erpsync-test").replace("_", "-")
    yield prefix
    await support.delete_broker_objects(prefix)


@pytest.fixture
def stores() -> Iterator[dict[int, MemoryStore]]:
    """Fresh in-memory systems for connection ids 0 (the CRM), 1 and 2, dropped afterwards."""
    names = {cid: support.unique(f"store{cid}") for cid in (0, 1, 2)}
    yield {cid: MemoryStore.named(name) for cid, name in names.items()}
    for name in names.values():
        MemoryStore.drop(name)
